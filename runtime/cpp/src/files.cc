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

#include "sha256.h"
#include "text.h"

namespace tflite_transfer {
namespace {

constexpr size_t kTempRandomLength = 8;
constexpr char kTempAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789_";  // Python's mkstemp's
constexpr char kTempSuffix[] = ".tmp";
constexpr int kMaxSymlinks = 40;  // Linux's limit (ELOOP)
// The longest file name (bytes) of Linux and Android filesystems (ext4, f2fs: NAME_MAX).
constexpr size_t kNameMax = 255;
// Temporary names of long targets: `.<first bytes of the name>.<16 hex of sha256(name)>.`
constexpr size_t kLongNamePrefixBytes = 200;
constexpr size_t kLongNameHashDigits = 16;

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

// What every temporary file of target `name` starts with: `.<name>.`, or for a name so long
// that `.<name>.<8 random>.tmp` would pass kNameMax, `.<its first 200 bytes, cut at a
// character boundary>.<16 hex digits of sha256(name)>.` (runtime/SPEC.md, "Atomic write").
std::string TempPrefix(const std::string& name) {
  if (name.size() + 2 + kTempRandomLength + std::strlen(kTempSuffix) <= kNameMax) return "." + name + ".";
  size_t cut = std::min(name.size(), kLongNamePrefixBytes);
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return "." + name.substr(0, cut) + "." + Sha256Hex(name.data(), name.size()).substr(0, kLongNameHashDigits) + ".";
}

bool IsTempNameOf(const std::string& entry, const std::string& name) {
  std::string prefix = TempPrefix(name), suffix = kTempSuffix;
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

bool SameFile(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// A crash (kill -9, power cut, SIGINT in a program without handlers) leaves the temporary file
// behind. Writers hold an flock on theirs from creation (CreateTemporary) until it is renamed,
// so a file we can lock has no live writer; it is removed only if the name still is that file.
// (Python's writer does not lock and removes every matching file; a C++ and a Python writer
// racing on one target can thus fail one of the two writes, never corrupt the target.)
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
    struct stat status, named;
    if (::fstat(descriptor, &status) == 0 && S_ISREG(status.st_mode) && status.st_uid == ::geteuid() &&
        ::flock(descriptor, LOCK_EX | LOCK_NB) == 0 && ::lstat(candidate.c_str(), &named) == 0 &&
        SameFile(status, named)) {
      ::unlink(candidate.c_str());
    }
    ::close(descriptor);
  }
}

int CreateTemporary(const std::string& directory, const std::string& name, std::string& temp_path) {
  std::random_device entropy;
  std::mt19937_64 generator((static_cast<uint64_t>(entropy()) << 32) ^ entropy() ^ static_cast<uint64_t>(::getpid()));
  std::uniform_int_distribution<size_t> pick(0, sizeof kTempAlphabet - 2);
  const std::string prefix = TempPrefix(name);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string random;
    for (size_t index = 0; index < kTempRandomLength; ++index) random += kTempAlphabet[pick(generator)];
    temp_path = directory + "/" + prefix + random + kTempSuffix;
    // Mode 0666: the kernel applies the umask, as for any new file (mkstemp would force 0600).
    int descriptor = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (descriptor < 0) {
      if (errno == EEXIST) continue;
      throw FileError(std::strerror(errno));
    }
    // The lock marks it live for RemoveStaleTemporaries. Another writer's cleanup may have
    // locked and removed it between open and flock: then the name is gone or another file's,
    // and we start again with a new name (a lost race must not fail the save).
    struct stat mine, named;
    if (::flock(descriptor, LOCK_EX) == 0 && ::fstat(descriptor, &mine) == 0 &&
        ::stat(temp_path.c_str(), &named) == 0 && SameFile(mine, named)) {
      return descriptor;
    }
    ::close(descriptor);
  }
  throw FileError("could not create a unique temporary file");
}

// Renaming over a device node or FIFO replaces it (as root, a save to /dev/null once replaced the
// machine's /dev/null with a regular file): only a regular file, or nothing, may be replaced.
void RequireRegularOrAbsent(const std::string& target) {
  struct stat existing;
  if (::lstat(target.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    throw NotRegularFileError("it is " + KindOf(existing.st_mode) + ", not a regular file");
  }
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
  RequireRegularOrAbsent(target);
  RemoveStaleTemporaries(directory, name);
  std::string temp_path;
  int descriptor = CreateTemporary(directory, name, temp_path);
  try {
    write_content(descriptor);
    // Without fsync, a power cut after the rename can leave the new name pointing at a file
    // whose data never reached the disk (zero-length or garbage on ext4/f2fs).
    if (::fsync(descriptor) != 0) throw FileError(std::string("fsync: ") + std::strerror(errno));
    struct stat existing;
    if (::stat(target.c_str(), &existing) == 0) ::fchmod(descriptor, existing.st_mode & 07777);
    RequireRegularOrAbsent(target);  // again: the target may have been replaced meanwhile
    // Renamed while still locked: once unlocked, another writer's cleanup may remove the name.
    if (::rename(temp_path.c_str(), target.c_str()) != 0) throw FileError(std::strerror(errno));
    ::close(descriptor);  // the data is fsynced: a failing close changes nothing now
    descriptor = -1;
  } catch (...) {
    if (descriptor >= 0) ::close(descriptor);
    ::unlink(temp_path.c_str());
    throw;
  }
  FsyncDirectory(directory);
  return target;
}

}  // namespace tflite_transfer
