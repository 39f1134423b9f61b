"""Safe file access for every reader and writer of tflite-transfer (runtime and compiler).

Reading: `open_regular_file` refuses FIFOs, devices and directories before reading a byte
(a FIFO given as a model or checkpoint used to hang forever). Writing: `write_atomically`
writes through a temporary file in the target's directory, so a reader sees the old file or
the new one, never a mix, even after kill -9; it removes temporary files an earlier crash
left for the same target, gives new files the mode the umask allows (not mkstemp's 0600), and
writes through a symlink to its target instead of replacing the link. Temporary files are named
and locked exactly as the C++ writer (runtime/cpp/src/files.cc) names and locks them, so
writers of both languages on one target never remove each other's live file (runtime/SPEC.md#checkpoint-file-format,
"Atomic write").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable
from typing import BinaryIO

from tflite_transfer.runtime.errors import TransferError

try:
    import fcntl
except ImportError:  # no flock (Windows): stale temporary files are then left alone
    fcntl = None

# tempfile.mkstemp names: prefix + 8 characters of this alphabet + suffix (the C++ writer
# draws its names from the same alphabet).
_TEMP_RANDOM_LENGTH = 8
_TEMP_ALPHABET = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_TEMP_SUFFIX = b".tmp"
# The longest file name (bytes) of Linux and Android filesystems (ext4, f2fs: NAME_MAX). A target
# name so long that `.<name>.<8 random>.tmp` would pass it gets a temporary name made of its
# first bytes and a hash instead (temporary_prefix).
NAME_MAX = 255
_LONG_NAME_PREFIX_BYTES = 200
_LONG_NAME_HASH_DIGITS = 16


def check_path(path, what: str, error_class: type[TransferError]) -> str:
    """`path` as a str, or error_class naming what was expected (int paths, NUL bytes...)."""
    if isinstance(path, bool) or not isinstance(path, (str, bytes, os.PathLike)):
        raise error_class(f"{what} path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    try:
        text = os.fsdecode(os.fspath(path))
    except (TypeError, UnicodeDecodeError) as error:
        raise error_class(f"{what} path {path!r} is not a usable file name ({error})") from None
    if not text or "\0" in text:
        raise error_class(f"{what} path {text!r} is empty or contains a NUL byte; pass a file name")
    return text


def open_regular_file(path: str, what: str, error_class: type[TransferError]) -> tuple[BinaryIO, int]:
    """(binary file open for reading, its size); refuses anything but an existing regular file.

    The path is checked with stat before opening and the open file with fstat after (the
    path may be replaced in between); O_NONBLOCK makes even that open of a FIFO return at
    once instead of waiting for a writer.
    """
    try:
        _require_regular(os.stat(path).st_mode, path, what, error_class)
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error_class(f"{what} {path} does not exist; check the path") from None
    except PermissionError:
        raise error_class(f"{what} {path} is not readable (permission denied); check its mode "
                          "and owner") from None
    except OSError as error:
        raise error_class(f"could not open {what} {path}: {error.strerror or error}") from None
    try:
        status = os.fstat(descriptor)
        _require_regular(status.st_mode, path, what, error_class)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb"), status.st_size
    except BaseException:
        os.close(descriptor)
        raise


def _require_regular(mode: int, path: str, what: str, error_class) -> None:
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise error_class(f"{what} {path} is {kind}; pass a regular file")


def read_regular_file(path, what: str, error_class: type[TransferError]) -> bytes:
    """The whole content of a regular file (models: the interpreter needs them in memory)."""
    path = check_path(path, what, error_class)
    handle, size = open_regular_file(path, what, error_class)
    with handle:
        try:
            content = handle.read(size + 1)
        except OSError as error:
            raise error_class(f"could not read {what} {path}: {error.strerror or error}") from None
    if len(content) != size:
        raise error_class(f"{what} {path} changed size while being read ({size} -> "
                          f"{len(content)} bytes); read it again once it is complete")
    return content


def write_atomically(path, chunks: Iterable[bytes | memoryview], what: str,
                     error_class: type[TransferError]) -> str:
    """Writes the chunks to `path` atomically; returns the path of the file really written.

    A symlink is written through (its final target is replaced, the link stays); an existing
    target that is not a regular file (a device, FIFO or directory) is refused. Stale
    temporary files of the same target (`temporary_prefix(name) + <8 random> + .tmp`, left by
    a crash) are removed first, but only those no live writer holds locked: the temporary file
    is locked (flock) from its creation until it is renamed, so several processes may save
    the same path at once. A new file gets mode 0666 & ~umask; a replaced one keeps its mode.
    On any failure, including KeyboardInterrupt, the temporary file is removed and the old file
    is untouched; OSError becomes `error_class` naming the file.
    """
    path = check_path(path, what, error_class)
    target = os.path.realpath(path)  # a symlink (chain) is written through to its target
    directory, name = os.path.split(target)
    _require_regular_or_absent(target, path, what, error_class)
    try:
        _remove_stale_temporaries(directory, name)
        _replace(target, directory, name, chunks, lambda: _require_regular_or_absent(target, path, what, error_class))
    except OSError as error:
        shown = path if target == os.path.abspath(path) else f"{path} (-> {target})"
        raise error_class(
            f"could not write {what} {shown}: {error.strerror or error}; the previous file (if "
            "any) is unchanged - check that the directory exists, is writable and has free space"
        ) from None
    return target


def _require_regular_or_absent(target: str, path: str, what: str, error_class) -> None:
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return  # absent (or unreachable: the write reports it)
    if not stat.S_ISREG(mode):
        # Renaming over /dev/null (as root) would replace the device with a regular file.
        _require_regular(mode, path, what, error_class)


def temporary_prefix(name: str | bytes) -> bytes:
    """What every temporary file of target `name` starts with: `.<name>.`, or for a name so long
    that `.<name>.<8 random>.tmp` would pass NAME_MAX, `.<its first 200 bytes, cut at a UTF-8
    character boundary>.<16 hex digits of sha256(name)>.` (the C++ writer's TempPrefix)."""
    encoded = os.fsencode(name)
    if len(encoded) + 2 + _TEMP_RANDOM_LENGTH + len(_TEMP_SUFFIX) <= NAME_MAX:
        return b"." + encoded + b"."
    cut = _LONG_NAME_PREFIX_BYTES  # < len(encoded) here
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:  # not inside a UTF-8 sequence
        cut -= 1
    digest = hashlib.sha256(encoded).hexdigest()[:_LONG_NAME_HASH_DIGITS].encode("ascii")
    return b"." + encoded[:cut] + b"." + digest + b"."


def _is_temporary_of(entry: bytes, prefix: bytes) -> bool:
    random = entry[len(prefix):-len(_TEMP_SUFFIX)]
    return (len(entry) == len(prefix) + _TEMP_RANDOM_LENGTH + len(_TEMP_SUFFIX) and entry.startswith(prefix)
            and entry.endswith(_TEMP_SUFFIX) and all(byte in _TEMP_ALPHABET for byte in random))


def _replace(target: str, directory: str, name: str, chunks, recheck_target) -> None:
    descriptor, temp_path = _create_locked_temporary(directory, name)
    try:
        with os.fdopen(descriptor, "wb", closefd=False) as temp_file:
            for chunk in chunks:
                temp_file.write(chunk)
            temp_file.flush()
            # Without fsync, a power cut after the rename can leave the new name pointing at a
            # file whose data never reached the disk (zero-length or garbage on ext4/f2fs).
            os.fsync(descriptor)
        os.fchmod(descriptor, _mode_for(target))
        recheck_target()  # again: the target may have been replaced by a device or FIFO meanwhile
        # Renamed while still locked: once unlocked, another writer's cleanup may remove the name.
        os.replace(temp_path, target)
        temp_path = None
    finally:  # also on KeyboardInterrupt: never leave a temporary file behind
        if temp_path is not None:  # removed while still locked, so the name cannot be another's yet
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
        os.close(descriptor)
    _fsync_directory(directory)


def _create_locked_temporary(directory: str, name: str) -> tuple[int, str]:
    """(descriptor, path) of a new temporary file in `directory`, locked (flock) until closed.

    Another writer's cleanup may lock and remove the file between its creation and our flock:
    the name is then gone or another file's, and a new name is tried (a lost race must not fail
    the save)."""
    prefix = os.fsdecode(temporary_prefix(name))  # str paths (undecodable bytes as surrogates)
    for _ in range(100):
        descriptor, temp_path = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=os.fsdecode(_TEMP_SUFFIX))
        try:
            if fcntl is None:
                return descriptor, temp_path
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if _same_file(os.fstat(descriptor), os.stat(temp_path)):
                return descriptor, temp_path
        except FileNotFoundError:
            pass  # removed by another writer's cleanup before we locked it: try a new name
        except BaseException:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
            raise
        os.close(descriptor)
    raise FileExistsError(17, "could not create a temporary file that stays ours (100 attempts)")


def _same_file(first: os.stat_result, second: os.stat_result) -> bool:
    return first.st_dev == second.st_dev and first.st_ino == second.st_ino


def _mode_for(target: str) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)  # an overwritten file keeps its mode
    except OSError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc, kernel 4.7+);
    elsewhere set-and-restore (not thread-safe, but only there)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Removes temporary files of this target that a crash left: only files of ours that no
    live writer holds locked, and only if the name still is the file we locked."""
    if fcntl is None:
        return
    prefix = temporary_prefix(name)
    try:
        entries = os.listdir(os.fsencode(directory))
    except OSError:
        return  # the write itself will report the problem with the directory
    for entry in entries:
        if not _is_temporary_of(entry, prefix):
            continue
        candidate = os.path.join(os.fsencode(directory), entry)
        try:
            descriptor = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
                continue
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live writer: OSError
            if _same_file(status, os.lstat(candidate)):
                os.unlink(candidate)
        except OSError:
            continue
        finally:
            os.close(descriptor)


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself (best effort: not every platform can open a directory)."""
    try:
        directory_descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(directory_descriptor)
    except OSError:
        pass
    finally:
        os.close(directory_descriptor)
