// Safe file access shared by the checkpoint reader/writer and model loading, the same rules as
// the Python runtime (runtime/files.py): readers refuse anything but a regular file before
// reading a byte (a FIFO used to hang the reader forever); writers replace files atomically.
#ifndef TFLITE_TRANSFER_FILES_H_
#define TFLITE_TRANSFER_FILES_H_

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tflite_transfer {

// A file problem, as one line naming the file; callers rethrow it as their error class.
class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The target of a write exists and is not a regular file (a device, FIFO, socket, directory).
class NotRegularFileError : public FileError {
 public:
  using FileError::FileError;
};

// An open regular file. `what` ("checkpoint", "model file") starts every message.
class ReadableFile {
 public:
  // stat() before opening (FIFOs, devices, directories and sockets are refused unopened), then
  // open with O_NONBLOCK and fstat() again, in case the path was swapped in between.
  ReadableFile(const std::string& path, const std::string& what);
  ~ReadableFile();
  ReadableFile(const ReadableFile&) = delete;
  ReadableFile& operator=(const ReadableFile&) = delete;

  uint64_t size() const { return size_; }  // as fstat saw it when opened
  // Reads `count` bytes at `offset`; false if the file ends first (it shrank while open).
  bool ReadAt(uint64_t offset, void* buffer, size_t count) const;
  std::vector<uint8_t> ReadAll() const;  // exactly size() bytes, else FileError

 private:
  std::string path_, what_;
  int descriptor_ = -1;
  uint64_t size_ = 0;
};

// Writes `path` through a temporary file `.<name>.<8 random [a-z0-9_]>.tmp` (a name too long
// for that: runtime/SPEC.md, "Atomic write") in the target's directory (rename(2) is atomic only
// within one filesystem): readers see the old file or the new one, never a mix, even after
// kill -9. A symlink is written through (its final target is replaced, the link stays); an
// existing target that is not a regular file (device, FIFO, socket, directory) is refused; a
// new file gets 0666 & ~umask, a replaced one keeps its mode; temporary files of the same
// target that no live writer holds (crash leftovers) are removed first, and a writer never
// removes another's (flock-held from creation to rename). `write_content` writes everything to the descriptor (use WriteAll). Returns the path
// really written. Throws FileError with the system's reason; the old file is then unchanged.
std::string WriteFileAtomically(const std::string& path,
                                const std::function<void(int descriptor)>& write_content);

// write(2) until everything is written; FileError on failure.
void WriteAll(int descriptor, const void* data, size_t size);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_FILES_H_
