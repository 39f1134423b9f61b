#include "files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <random>

#include "text.h"

namespace tflite_transfer {
namespace {

constexpr size_t kTempRandomLength = 8;
constexpr char kTempAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789_";  // Python's mkstemp's
constexpr int kMaxSymlinks = 40;  // Linux's limit (ELOOP)

std::string KindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string BaseNameOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The final target of a symlink chain (which may not exist yet), or `path` itself.
std::string ResolveSymlinks(const std::string& path) {
  std::string current = path;
  for (int hop = 0; hop < kMaxSymlinks; ++hop) {
    struct stat status;
    if (::lstat(current.c_str(), &status) != 0 || !S_ISLNK(status.st_mode)) return current;
    std::vector<char> target(static_cast<size_t>(status.st_size > 0 ? status.st_size : PATH_MAX) + 1);
    ssize_t length = ::readlink(current.c_str(), target.data(), target.size());
    if (length < 0 || static_cast<size_t>(length) >= target.size()) return current;
    std::string link(target.data(), static_cast<size_t>(length));
    current = link.front() == '/' ? link : DirectoryOf(current) + "/" + link;
  }
  throw FileError("too many levels of symbolic links");
}

bool IsTempNameOf(const std::string& entry, const std::string& name) {
  std::string prefix = "." + name + ".", suffix = ".tmp";
  if (entry.size() != prefix.size() + kTempRandomLength + suffix.size() ||
      entry.compare(0, prefix.size(), prefix) != 0 ||
      entry.compare(entry.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  for (size_t at = prefix.size(); at < prefix.size() + kTempRandomLength; ++at) {
    if (!std::strchr(kTempAlphabet, entry[at]) || entry[at] == '\0') return false;
  }
  return true;
}

// A crash (kill -9, power cut, SIGINT in a program without handlers) leaves the temporary file
// behind. Writers hold an flock on theirs, so a file we can lock has no live writer. (Python's
// writer does not lock and removes every matching file; a C++ and a Python writer racing on one
// target can thus fail one of the two writes, never corrupt the target.)
void RemoveStaleTemporaries(const std::string& directory, const std::string& name) {
  DIR* listing = ::opendir(directory.c_str());
  if (!listing) return;  // the write itself reports what is wrong with the directory
  std::vector<std::string> stale;
  while (const dirent* entry = ::readdir(listing)) {
    if (IsTempNameOf(entry->d_name, name)) stale.push_back(directory + "/" + entry->d_name);
  }
  ::closedir(listing);
  for (const std::string& candidate : stale) {
    int descriptor = ::open(candidate.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (descriptor < 0) continue;
    struct stat status;
    if (::fstat(descriptor, &status) == 0 && S_ISREG(status.st_mode) && status.st_uid == ::geteuid() &&
        ::flock(descriptor, LOCK_EX | LOCK_NB) == 0) {
      ::unlink(candidate.c_str());
    }
    ::close(descriptor);
  }
}

int CreateTemporary(const std::string& directory, const std::string& name, std::string& temp_path) {
  std::random_device entropy;
  std::mt19937_64 generator((static_cast<uint64_t>(entropy()) << 32) ^ entropy() ^ static_cast<uint64_t>(::getpid()));
  std::uniform_int_distribution<size_t> pick(0, sizeof kTempAlphabet - 2);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string random;
    for (size_t index = 0; index < kTempRandomLength; ++index) random += kTempAlphabet[pick(generator)];
    temp_path = directory + "/." + name + "." + random + ".tmp";
    // Mode 0666: the kernel applies the umask, as for any new file (mkstemp would force 0600).
    int descriptor = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (descriptor >= 0) {
      ::flock(descriptor, LOCK_EX);  // marks it live for RemoveStaleTemporaries
      return descriptor;
    }
    if (errno != EEXIST) throw FileError(std::strerror(errno));
  }
  throw FileError("could not create a unique temporary file");
}

// Persists the rename itself (best effort: not every platform can open a directory).
void FsyncDirectory(const std::string& directory) {
  int descriptor = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (descriptor < 0) return;
  ::fsync(descriptor);
  ::close(descriptor);
}

}  // namespace

ReadableFile::ReadableFile(const std::string& path, const std::string& what) : path_(path), what_(what) {
  std::string shown = what + " " + Printable(path);
  struct stat status;
  if (::stat(path.c_str(), &status) != 0) {
    if (errno == ENOENT) throw FileError(shown + " does not exist; check the path");
    throw FileError("could not open " + shown + ": " + std::strerror(errno));
  }
  if (!S_ISREG(status.st_mode)) throw FileError(shown + " is " + KindOf(status.st_mode) + "; pass a regular file");
  descriptor_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (descriptor_ < 0) {
    if (errno == EACCES) throw FileError(shown + " is not readable (permission denied); check its mode and owner");
    throw FileError("could not open " + shown + ": " + std::strerror(errno));
  }
  if (::fstat(descriptor_, &status) != 0 || !S_ISREG(status.st_mode)) {
    ::close(descriptor_);
    throw FileError(shown + " is " + KindOf(status.st_mode) + "; pass a regular file");
  }
  ::fcntl(descriptor_, F_SETFL, ::fcntl(descriptor_, F_GETFL) & ~O_NONBLOCK);
  size_ = static_cast<uint64_t>(status.st_size);
}

ReadableFile::~ReadableFile() {
  if (descriptor_ >= 0) ::close(descriptor_);
}

bool ReadableFile::ReadAt(uint64_t offset, void* buffer, size_t count) const {
  char* bytes = static_cast<char*>(buffer);
  while (count > 0) {
    ssize_t got = ::pread(descriptor_, bytes, count, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw FileError("could not read " + what_ + " " + Printable(path_) + ": " + std::strerror(errno));
    if (got == 0) return false;
    bytes += got;
    offset += static_cast<uint64_t>(got);
    count -= static_cast<size_t>(got);
  }
  return true;
}

std::vector<uint8_t> ReadableFile::ReadAll() const {
  std::vector<uint8_t> content(size_);
  uint8_t extra;
  if (!ReadAt(0, content.data(), content.size()) || ReadAt(size_, &extra, 1)) {
    throw FileError(what_ + " " + Printable(path_) + " changed size while being read; read it again once it is complete");
  }
  return content;
}

void WriteAll(int descriptor, const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t written = ::write(descriptor, bytes, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw FileError(std::strerror(errno));
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

std::string WriteFileAtomically(const std::string& path,
                                const std::function<void(int descriptor)>& write_content) {
  std::string target = ResolveSymlinks(path);
  std::string directory = DirectoryOf(target), name = BaseNameOf(target);
  struct stat existing;
  if (::stat(target.c_str(), &existing) == 0 && S_ISDIR(existing.st_mode)) throw FileError("it is a directory");
  RemoveStaleTemporaries(directory, name);
  std::string temp_path;
  int descriptor = CreateTemporary(directory, name, temp_path);
  try {
    write_content(descriptor);
    // Without fsync, a power cut after the rename can leave the new name pointing at a file
    // whose data never reached the disk (zero-length or garbage on ext4/f2fs).
    if (::fsync(descriptor) != 0) throw FileError(std::string("fsync: ") + std::strerror(errno));
    if (::stat(target.c_str(), &existing) == 0) ::fchmod(descriptor, existing.st_mode & 07777);
    int closed = ::close(descriptor);
    descriptor = -1;
    if (closed != 0) throw FileError(std::string("close: ") + std::strerror(errno));
    if (::rename(temp_path.c_str(), target.c_str()) != 0) throw FileError(std::strerror(errno));
  } catch (...) {
    if (descriptor >= 0) ::close(descriptor);
    ::unlink(temp_path.c_str());
    throw;
  }
  FsyncDirectory(directory);
  return target;
}

}  // namespace tflite_transfer
