"""runtime/files.py: refusing non-regular files, and the atomic writer every output uses."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

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


def test_sigint_during_a_write_leaves_no_temporary(tmp_path):
    """A real SIGINT from another process while chunks are being written."""
    script = textwrap.dedent("""
        import os, sys, time
        from tflite_transfer.runtime import files
        from tflite_transfer.runtime.errors import InvalidInputError
        def chunks():
            yield b"x" * 1000
            print("writing", flush=True)
            while True:
                time.sleep(0.01)
                yield b"y"
        try:
            files.write_atomically(sys.argv[1], chunks(), "model", InvalidInputError)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out.bin")],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    assert any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    child.send_signal(signal.SIGINT)
    output, _ = child.communicate(timeout=60)
    assert output.strip() == "interrupted"
    assert os.listdir(tmp_path) == []


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
