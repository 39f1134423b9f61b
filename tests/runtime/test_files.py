"""runtime/files.py: refusing non-regular files, and the atomic writer every output uses."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from tflite_transfer.runtime import files
from tflite_transfer.runtime.errors import CheckpointError, InvalidInputError


def write(path, data=b"new"):
    return files.write_atomically(path, [data], "model", InvalidInputError)


def test_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    """Temp files a kill -9 left (`.<name>.<8 random>.tmp`) go on the next write of that
    target; other files, and temps of other targets, stay."""
    stale = [".out.bin.ab_cd123.tmp", ".out.bin.zzzzzzzz.tmp"]
    kept = [".other.bin.abcdefgh.tmp", ".out.bin.notmine.tmp", "out.bin.abcdefgh.tmp", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x" * 100)
    write(tmp_path / "out.bin")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["out.bin"])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_respect_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert files.current_umask() == umask
        write(tmp_path / "out.bin")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == 0o666 & ~umask


def test_replaced_files_keep_their_mode(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o604)
    write(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o604


def test_symlink_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "model.bin"
    real.write_bytes(b"old")
    (tmp_path / "middle").symlink_to(real)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "middle")  # a chain of two links
    assert write(link, b"through") == str(real)
    assert link.is_symlink() and (tmp_path / "middle").is_symlink()
    assert real.read_bytes() == b"through" and link.read_bytes() == b"through"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "real" / "new.bin")
    write(dangling, b"created")
    assert dangling.is_symlink() and (tmp_path / "real" / "new.bin").read_bytes() == b"created"


def test_non_regular_targets_are_refused_not_replaced(tmp_path):
    """As root, renaming over /dev/null would turn the device into a regular file."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to("/dev/null")
    for target, kind in [("/dev/null", "a device"), (tmp_path / "link", "a device"),
                         (tmp_path / "fifo", "a FIFO"), (tmp_path, "a directory")]:
        with pytest.raises(InvalidInputError, match=f"is {kind}.*; pass a regular file"):
            write(target)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)


def test_failures_are_one_project_error_and_leave_nothing(tmp_path):
    (tmp_path / "a_directory").mkdir()
    with pytest.raises(InvalidInputError, match="model .*a_directory is a directory; pass a regular file"):
        write(tmp_path / "a_directory")
    with pytest.raises(CheckpointError, match="could not write checkpoint .*No such file"):
        files.write_atomically(tmp_path / "absent" / "x", [b""], "checkpoint", CheckpointError)
    assert os.listdir(tmp_path) == ["a_directory"] and os.listdir(tmp_path / "a_directory") == []


def test_full_disk_is_a_project_error(tmp_path):
    # A chunk source failing with ENOSPC stands for the full disk (/dev/full cannot hold the
    # temporary file; the compiler's CLI test fills a real tmpfs).
    def chunks():
        yield b"header"
        raise OSError(28, "No space left on device")
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(InvalidInputError, match="No space left on device; the previous file"):
        files.write_atomically(target, chunks(), "model", InvalidInputError)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


# A child that writes one chunk, says "writing" and then blocks until its stdin gets a line (or
# closes): its temporary file stays live as long as the test wants. It restores Python's SIGINT
# handler itself: started as a background job, the suite (and so the child) may inherit SIGINT
# as ignored, and Python then never raises KeyboardInterrupt.
_BLOCKED_WRITER = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from tflite_transfer.runtime import files
    from tflite_transfer.runtime.errors import InvalidInputError
    def chunks():
        yield b"x" * 1000
        print("writing", flush=True)
        sys.stdin.readline()
        yield sys.argv[2].encode()
    try:
        files.write_atomically(sys.argv[1], chunks(), "model", InvalidInputError)
        print("written", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
""")


def start_blocked_writer(target, content: str, **popen) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", _BLOCKED_WRITER, str(target), content],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen)
    try:
        assert child.stdout.readline().strip() == "writing"
    except BaseException:
        stop(child)
        raise
    return child


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(timeout=60)


@pytest.mark.parametrize("inherited_sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_sigint_during_a_write_leaves_no_temporary(tmp_path, inherited_sigint):
    """A real SIGINT from another process while chunks are being written, whatever SIGINT
    disposition the test process was started with (a background job inherits it ignored)."""
    child = start_blocked_writer(tmp_path / "out.bin", "never",
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, inherited_sigint))
    try:
        assert any(name.endswith(".tmp") for name in os.listdir(tmp_path))
        child.send_signal(signal.SIGINT)
        output, _ = child.communicate(timeout=60)
    finally:
        stop(child)
    assert output.strip() == "interrupted"
    assert os.listdir(tmp_path) == []


def test_a_live_writers_temporary_is_never_removed(tmp_path):
    """Another process's temporary file, still being written, survives our save of the same
    target (the stale-file cleanup removed it: 92 of 200 concurrent saves failed); its save
    then completes and wins, being the last rename."""
    target = tmp_path / "out.bin"
    child = start_blocked_writer(target, "theirs")
    try:
        (live,) = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        write(target, b"ours")
        assert target.read_bytes() == b"ours" and live in os.listdir(tmp_path)
        output, _ = child.communicate("go\n", timeout=60)
    finally:
        stop(child)
    assert output.strip() == "written" and child.returncode == 0
    assert target.read_bytes() == b"x" * 1000 + b"theirs" and os.listdir(tmp_path) == ["out.bin"]


_SAVE_LOOP = textwrap.dedent("""
    import os, sys, time
    from tflite_transfer.runtime import files
    from tflite_transfer.runtime.errors import InvalidInputError
    target, saves, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    content = os.urandom(1 << 18)
    while time.time() < start:  # every process starts saving at the same moment
        time.sleep(0.001)
    failures = 0
    for _ in range(saves):
        try:
            files.write_atomically(target, [content[:1 << 17], content[1 << 17:]], "model", InvalidInputError)
        except InvalidInputError as error:
            failures += 1
            print(error, file=sys.stderr)
    print(failures)
""")


def test_concurrent_saves_of_one_path_all_succeed(tmp_path):
    """200 saves by 4 processes at once on one path: none fails, the file is one writer's
    whole content, no temporary file is left."""
    target = tmp_path / "shared.bin"
    start = time.time() + 2.0  # after every interpreter has started
    children = [subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(target), "50", str(start)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]
    try:
        results = [child.communicate(timeout=300) for child in children]
    finally:
        for child in children:
            stop(child)
    assert [(child.returncode, stdout.strip(), stderr) for child, (stdout, stderr) in zip(children, results)] == \
        [(0, "0", "")] * 4
    assert target.stat().st_size == 1 << 18 and os.listdir(tmp_path) == ["shared.bin"]


@pytest.mark.parametrize("name_bytes", [241, 242, 250, 255])
def test_long_file_names_save(tmp_path, name_bytes):
    """Names of 242-255 bytes were refused: `.<name>.<8 random>.tmp` is 14 bytes longer."""
    target = tmp_path / ("n" * (name_bytes - 4) + ".bin")
    write(target, b"long")
    assert target.read_bytes() == b"long" and os.listdir(tmp_path) == [target.name]


def test_temporary_names_follow_the_cpp_writers_rule(tmp_path):
    """`.<name>.` while `.<name>.<8>.tmp` fits in 255 bytes; beyond, `.<first 200 bytes, cut
    before a split UTF-8 character>.<16 hex of sha256(name)>.` (runtime/cpp/src/files.cc)."""
    assert files.temporary_prefix("model.ckpt") == b".model.ckpt."
    assert files.temporary_prefix("n" * 241) == b"." + b"n" * 241 + b"."
    long = "x" * 250
    assert files.temporary_prefix(long) == \
        b"." + b"x" * 200 + b"." + hashlib.sha256(long.encode()).hexdigest()[:16].encode() + b"."
    accented = "a" + "\u00e9" * 124 + ".ck"  # byte 200 is the second byte of an e-acute
    assert len(accented.encode()) == 252
    assert files.temporary_prefix(accented) == \
        b".a" + "\u00e9".encode() * 99 + b"." + hashlib.sha256(accented.encode()).hexdigest()[:16].encode() + b"."
    write(tmp_path / accented, b"accented")
    assert (tmp_path / accented).read_bytes() == b"accented" and os.listdir(tmp_path) == [accented]
    with pytest.raises(InvalidInputError, match="File name too long"):
        write(tmp_path / ("n" * 256))


def test_a_long_names_crash_leftovers_are_removed(tmp_path):
    target = tmp_path / ("x" * 250)
    digest = hashlib.sha256(target.name.encode()).hexdigest()[:16]
    leftover = tmp_path / f".{'x' * 200}.{digest}.zz_00000.tmp"
    leftover.write_bytes(b"half a file")
    other = tmp_path / f".{'x' * 200}.{'f' * 16}.zz_00000.tmp"  # another target's: kept
    other.write_bytes(b"")
    write(target)
    assert sorted(os.listdir(tmp_path)) == sorted([target.name, other.name])


@pytest.mark.parametrize("path, message", [
    ("a\0b", "NUL byte"), ("", "empty"), (3, "got int 3"), (b"\xff\xfe", None), (True, "got bool"),
])
def test_unusable_paths(tmp_path, monkeypatch, path, message):
    if message is None:  # undecodable bytes are a valid POSIX name: written as such
        monkeypatch.chdir(tmp_path)
        write(path)
        assert os.listdir(tmp_path) == [os.fsdecode(path)]
        return
    with pytest.raises(InvalidInputError, match=message):
        write(path)


def test_non_regular_files_are_refused_before_reading(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, kind in [(tmp_path / "fifo", "a FIFO"), (tmp_path, "a directory"), ("/dev/null", "a device")]:
        with pytest.raises(InvalidInputError, match=f"is {kind}.*; pass a regular file"):
            files.read_regular_file(path, "model", InvalidInputError)
