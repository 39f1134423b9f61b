"""The compiler's one way to read or write a file or folder the user named: --base, --labels,
--head=keras:FILE, --calibration_dir, --base_weights, --output, and export's --model,
--checkpoint and --output.

Why a module: open() on a FIFO blocks forever and a device reads forever, and every OSError
(no permission, a NUL byte, a read-only or full filesystem) would otherwise reach the user as
a traceback. Each function here checks what kind of thing the path is before opening it and
turns every failure into one InvalidInputError line that names the flag and the path and says
what to do. Paths are shown escaped (repr): a path may hold newlines or terminal escapes.
The reading and writing themselves are runtime/files.py's, which the runtime shares.
"""

from __future__ import annotations

import os
import stat

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.runtime import files

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISREG, "a regular file"))


def shown(path) -> str:
    """The path for a one-line message: quoted, with control characters escaped."""
    if isinstance(path, (str, bytes, os.PathLike)):
        return repr(os.fsdecode(path))
    return repr(path)


def printable(path) -> str:
    """The path as is when every character prints, else escaped: for `source` prefixes."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
    return text if text.isprintable() else shown(text)


def kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _checked_path(path, flag: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"{flag} must be a path (str), got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text:
        raise InvalidInputError(f"{flag} is empty; name a path")
    if "\0" in text:
        raise InvalidInputError(f"{flag} {shown(text)} holds a NUL byte, which no path can hold")
    return text


def _stat(path, flag: str) -> tuple[str, os.stat_result]:
    text = _checked_path(path, flag)
    try:
        return text, os.stat(text)
    except FileNotFoundError:
        raise InvalidInputError(f"{flag} {shown(text)} not found") from None
    except OSError as error:
        raise InvalidInputError(f"{flag} {shown(text)} cannot be read: {error.strerror}") from None


def check_regular_file(path, flag: str, what: str = "a file") -> str:
    """The path as a str, if it names an existing regular file (symlinks followed)."""
    text, status = _stat(path, flag)
    if not stat.S_ISREG(status.st_mode):
        raise InvalidInputError(f"{flag} {shown(text)} is {kind_of(status.st_mode)}, not {what}")
    return text


def check_file_or_directory(path, flag: str, what: str) -> tuple[str, bool]:
    """(the path as a str, whether it is a directory) for a regular file or a directory."""
    text, status = _stat(path, flag)
    if not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
        raise InvalidInputError(f"{flag} {shown(text)} is {kind_of(status.st_mode)}, not {what}")
    return text, stat.S_ISDIR(status.st_mode)


def check_directory(path, flag: str, what: str = "a directory") -> str:
    text, status = _stat(path, flag)
    if not stat.S_ISDIR(status.st_mode):
        raise InvalidInputError(f"{flag} {shown(text)} is {kind_of(status.st_mode)}, not {what}")
    if not os.access(text, os.R_OK | os.X_OK):
        raise InvalidInputError(f"{flag} {shown(text)} cannot be read: permission denied")
    return text


def read_file_bytes(path, flag: str, what: str = "a file") -> bytes:
    """The whole file. Refuses anything but a regular file before opening it; the read itself
    (non-blocking open, fstat re-check: a FIFO swapped in after the check cannot hang it) is
    runtime/files.py's, shared with the runtime's readers."""
    text = check_regular_file(path, flag, what)
    return files.read_regular_file(text, flag, InvalidInputError)


def read_text_file(path, flag: str, what: str = "a UTF-8 text file") -> str:
    data = read_file_bytes(path, flag, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{flag} {shown(path)} is not UTF-8 text (byte {error.start}: "
                                f"0x{data[error.start]:02x}); save it as UTF-8") from None


def read_labels(path, flag: str = "--labels") -> tuple[str, ...]:
    """One class name per line, in class order. A blank line inside the list is refused (it
    would silently drop a class and shift every id after it); the file may end with a newline."""
    text = read_text_file(path, flag, "a text file of class names")
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise InvalidInputError(f"{flag} {shown(path)}: line {number} is blank; give one class name "
                                    "per line, no blank lines (class ids follow the line order)")
    if not lines:
        raise InvalidInputError(f"{flag} {shown(path)} holds no class names; give one per line")
    return tuple(line.strip() for line in lines)


def check_output_file(path, flag: str = "--output") -> str:
    """Cheap checks before minutes of compiling: the output names a file (not a directory or
    device) in an existing directory this process can write in."""
    text = _checked_path(path, flag)
    if os.path.isdir(text):
        raise InvalidInputError(f"{flag} {shown(text)} is a directory; name a file inside it, "
                                f"e.g. {shown(os.path.join(text, 'model.tflite'))}")
    if os.path.lexists(text) and not os.path.islink(text):
        mode = os.lstat(text).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidInputError(f"{flag} {shown(text)} is {kind_of(mode)}; name a regular file")
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise InvalidInputError(f"{flag} directory {shown(directory)} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(directory) else "permission denied"
        raise InvalidInputError(f"{flag}: cannot write in {shown(directory)} ({reason}); "
                                "choose another directory")
    return text


def _read_only(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def write_atomically(path, data: bytes, flag: str = "--output") -> None:
    """The output checked as above, then written by runtime/files.py: through a temporary
    file in the same directory, so no partial file is ever left and an existing output stays
    untouched when the write fails (full disk); stale temporaries of earlier crashes removed,
    the umask's mode for a new file, a symlink written through."""
    text = check_output_file(path, flag)
    target = os.path.realpath(text)
    if target != os.path.abspath(text):
        check_output_file(target, flag)
    files.write_atomically(text, [data], flag, InvalidInputError)
