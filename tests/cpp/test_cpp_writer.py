"""The C++ checkpoint writer (runtime/cpp/src/files.cc) where it used to fail: it renamed a
regular file over device nodes and FIFOs, concurrent saves of one path removed each other's
temporary files, and valid file names of 242-255 bytes were refused because the temporary name
was 14 bytes longer. Device nodes and FIFOs here are the test's own, in its temporary directory:
never /dev/null or any real device."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess

from tests.fixtures.cpp_runtime import assert_one_error_line, run_demo
from tflite_transfer.runtime.checkpoint import read_checkpoint


def save(demo, model, target, **kwargs):
    return run_demo(demo, "--model", model, "--epochs", 0, "--checkpoint", target, **kwargs)


def test_non_regular_targets_are_refused_and_left_alone(cpp_demo, tiny_v2_model_path, tmp_path):
    fifo = tmp_path / "fifo.ckpt"
    os.mkfifo(fifo)
    device = tmp_path / "null-like.ckpt"  # a character device node of our own (major 1, minor 3)
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(tmp_path / "socket.ckpt"))
        (tmp_path / "directory.ckpt").mkdir()
        (tmp_path / "link-to-fifo.ckpt").symlink_to("fifo.ckpt")  # written through: the FIFO itself
        cases = [("fifo.ckpt", "a FIFO (named pipe)"), ("null-like.ckpt", "a device"),
                 ("socket.ckpt", "a socket"), ("directory.ckpt", "a directory"), ("link-to-fifo.ckpt", "a FIFO (named pipe)")]
        for name, kind in cases:
            before = os.lstat(tmp_path / name)
            result = save(cpp_demo, tiny_v2_model_path, tmp_path / name, expect_ok=False, timeout=60)
            assert_one_error_line(result, "could not write checkpoint", f"it is {kind}, not a regular file",
                                  "nothing was written")
            after = os.lstat(tmp_path / name)
            assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
        assert stat.S_ISCHR(os.lstat(device).st_mode) and os.lstat(device).st_rdev == os.makedev(1, 3)
        leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        assert leftovers == []
    finally:
        listener.close()


def test_concurrent_saves_of_one_path_all_succeed(cpp_demo, tiny_v2_model_path, tmp_path):
    """200 saves, 5 processes at a time on one path: each writer's stale-temporary cleanup must
    never remove another writer's live temporary file (it did: 2 of 200 failed)."""
    target = tmp_path / "shared.ckpt"
    failures, saves = [], 0
    for _ in range(40):
        processes = [subprocess.Popen([cpp_demo, "--model", tiny_v2_model_path, "--epochs", "0", "--checkpoint",
                                       str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for _ in range(5)]
        try:
            for process in processes:
                _, stderr = process.communicate(timeout=120)
                saves += 1
                if process.returncode != 0:
                    failures.append(stderr.strip())
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert (saves, failures) == (200, [])
    assert read_checkpoint(target).tensors  # the file is whole
    assert [name for name in os.listdir(tmp_path) if name != "shared.ckpt"] == []


def test_long_file_names_save_and_too_long_ones_are_refused(cpp_demo, tiny_v2_model_path, tmp_path):
    reference = tmp_path / "reference.ckpt"
    save(cpp_demo, tiny_v2_model_path, reference)
    for length in (241, 242, 250, 255):
        target = tmp_path / ("n" * (length - len(".ckpt")) + ".ckpt")
        save(cpp_demo, tiny_v2_model_path, target)
        assert target.read_bytes() == reference.read_bytes(), length
    # Two-byte characters across the cut: the temporary name must not end inside one.
    accented = tmp_path / ("a" + "é" * 124 + ".ck")  # byte 200 is the second byte of an 'é'
    assert len(accented.name.encode()) == 252
    save(cpp_demo, tiny_v2_model_path, accented)
    assert accented.read_bytes() == reference.read_bytes()
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert leftovers == []
    too_long = tmp_path / ("n" * 256)
    result = save(cpp_demo, tiny_v2_model_path, too_long, expect_ok=False)
    assert_one_error_line(result, "could not write checkpoint", "File name too long")


def test_a_long_names_crash_leftovers_are_removed(cpp_demo, tiny_v2_model_path, tmp_path):
    """A temporary file left by a killed writer of a long name is found by the same prefix."""
    target = tmp_path / ("x" * 250)
    save(cpp_demo, tiny_v2_model_path, target)
    digest = hashlib.sha256(target.name.encode()).hexdigest()[:16]
    leftover = tmp_path / f".{'x' * 200}.{digest}.zz_00000.tmp"
    leftover.write_bytes(b"half a checkpoint")
    other = tmp_path / f".{'x' * 200}.{'f' * 16}.zz_00000.tmp"  # another target's: kept
    other.write_bytes(b"")
    save(cpp_demo, tiny_v2_model_path, target)
    assert not leftover.exists() and other.exists()
