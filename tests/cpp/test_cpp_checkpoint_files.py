"""The C++ checkpoint reader and writer against runtime/SPEC.md#checkpoint-file-format (format version 2): checksum,
reader order, bounds, non-regular files, version 1 on request, atomic writes, escaped names.
Checked against an independent Python re-implementation of the byte layout (BUILD.md)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import resource
import stat
import struct

import numpy as np
import pytest

from tests.fixtures.cpp_runtime import assert_one_error_line, run_demo

CHECKSUM_MARKER = b'"checksum":"'


def craft_checkpoint(tensors: dict, fingerprint: str, extra: dict | None = None, version: int = 2,
                     header_entries: dict | None = None, data: bytes | None = None) -> bytes:
    """A checkpoint built from BUILD.md alone: widest items first, then by name; version 2 adds
    __metadata__.checksum = sha256 of the file with its own digits as '0'."""
    metadata = {"format": "tflite-transfer-checkpoint", "format_version": str(version),
                "model_fingerprint": fingerprint}
    if version == 2:
        metadata["checksum"] = "0" * 64
    metadata.update(sorted((extra or {}).items()))
    header, offset, chunks = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors, key=lambda n: (-tensors[n].itemsize, n.encode())):
        array = np.ascontiguousarray(tensors[name])
        code = {"f4": "F32", "i4": "I32", "f8": "F64", "u1": "U8"}[array.dtype.str[1:]]
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        chunks.append(array.tobytes())
    header.update(header_entries or {})
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    body = b"".join(chunks) if data is None else data
    file_bytes = struct.pack("<Q", len(header_bytes)) + header_bytes + body
    return stamp_checksum(file_bytes) if version == 2 else file_bytes


def stamp_checksum(file_bytes: bytes) -> bytes:
    at = file_bytes.index(CHECKSUM_MARKER) + len(CHECKSUM_MARKER)
    zeroed = file_bytes[:at] + b"0" * 64 + file_bytes[at + 64:]
    return zeroed[:at] + hashlib.sha256(zeroed).hexdigest().encode() + zeroed[at + 64:]


def check(demo, path, *flags, **kwargs):
    return run_demo(demo, "--check_checkpoint", path, *flags, expect_ok=False, **kwargs)


@pytest.fixture()
def cpp_checkpoint(cpp_demo, tiny_v2_model_path, tmp_path):
    path = tmp_path / "cpp.ckpt"
    run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", 0, "--checkpoint", path)
    return path


def test_the_writer_writes_version_2_with_the_documented_checksum(cpp_demo, cpp_checkpoint):
    data = cpp_checkpoint.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8:8 + length])["__metadata__"]
    assert list(metadata)[:4] == ["format", "format_version", "model_fingerprint", "checksum"]
    assert metadata["format_version"] == "2"
    assert stamp_checksum(data) == data  # the checksum is sha256 with its own digits zeroed
    parsed = json.loads(check(cpp_demo, cpp_checkpoint).stdout)
    assert parsed["format_version"] == 2 and parsed["metadata"]["checksum"] == metadata["checksum"]


def test_an_independently_built_file_is_read_bit_for_bit(cpp_demo, tmp_path):
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "z": np.array([-0.0, np.nan], np.float64),
               "step": np.array([7], np.int32), "é\u2603": np.array([1, 2], np.uint8)}
    path = tmp_path / "python.ckpt"
    path.write_bytes(craft_checkpoint(tensors, "ab" * 32, {"note": "x"}))
    parsed = json.loads(check(cpp_demo, path).stdout)
    assert parsed["metadata"]["note"] == "x"
    for name, array in tensors.items():
        entry = parsed["tensors"][name]
        assert entry["shape"] == list(array.shape) and entry["dtype"] == str(array.dtype)
        assert entry["sha256"] == hashlib.sha256(array.tobytes()).hexdigest()


def test_version_1_is_refused_unless_allowed(cpp_demo, tiny_v2_model_path, cpp_checkpoint, tmp_path):
    v2 = json.loads(check(cpp_demo, cpp_checkpoint).stdout)
    state = {}  # rebuild the same state as a version 1 file
    data = cpp_checkpoint.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    for name, entry in header.items():
        if name != "__metadata__":
            begin, end = entry["data_offsets"]
            state[name] = np.frombuffer(data[8 + length + begin:8 + length + end],
                                        {"F32": np.float32, "I32": np.int32}[entry["dtype"]]).reshape(entry["shape"])
    old = tmp_path / "old.ckpt"
    old.write_bytes(craft_checkpoint(state, v2["model_fingerprint"], version=1))
    assert_one_error_line(check(cpp_demo, old), "has no checksum", "format version 1", "--allow_version_1")
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", old, "--epochs", 0, expect_ok=False)
    assert_one_error_line(result, "--allow_version_1")
    assert json.loads(check(cpp_demo, old, "--allow_version_1").stdout)["format_version"] == 1
    run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", old, "--allow_version_1", "--epochs", 0,
             "--checkpoint", tmp_path / "new.ckpt")
    assert (tmp_path / "new.ckpt").read_bytes() == cpp_checkpoint.read_bytes()  # saved again as version 2


def test_non_regular_files_are_refused_without_hanging(cpp_demo, tiny_v2_model_path, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # A FIFO nobody writes to: opening it for reading would block forever (timeout: a guard).
    assert_one_error_line(check(cpp_demo, fifo, timeout=30), "is a FIFO (named pipe); pass a regular file")
    result = run_demo(cpp_demo, "--model", fifo, "--epochs", 0, expect_ok=False, timeout=30)
    assert_one_error_line(result, "model file", "is a FIFO")
    assert_one_error_line(check(cpp_demo, tmp_path), "is a directory")
    assert_one_error_line(check(cpp_demo, "/dev/zero"), "is a device")
    assert_one_error_line(check(cpp_demo, tmp_path / "absent.ckpt"), "does not exist")


def test_sizes_are_checked_against_the_file_before_reading_or_allocating(cpp_demo, tmp_path):
    # A sparse 3 GiB file whose length field lies: refused from the first 8 bytes.
    huge = tmp_path / "huge.ckpt"
    with open(huge, "wb") as handle:
        handle.write(struct.pack("<Q", 2**40))
        handle.truncate(3 * 2**30)
    assert_one_error_line(check(cpp_demo, huge, timeout=30), "more than the 100000000-byte limit")
    short = tmp_path / "short.ckpt"
    short.write_bytes(struct.pack("<Q", 4096) + b"{}")
    assert_one_error_line(check(cpp_demo, short), "says 4096 bytes but only 2 bytes follow it")
    # A valid checksum over a 4 KiB file declaring a 1 TiB tensor: refused by the size check,
    # not by an allocation (the address space is capped at 1 GiB to prove it).
    lying = tmp_path / "lying.ckpt"
    lying.write_bytes(craft_checkpoint({}, "ab" * 32, header_entries={
        "w": {"dtype": "F32", "shape": [2**38], "data_offsets": [0, 2**40]}}, data=b"\0" * 4096))
    cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))  # noqa: E731
    assert_one_error_line(check(cpp_demo, lying, preexec_fn=cap), "'w' has data_offsets [0, 1099511627776] "
                          "outside the 4096-byte data section")


def test_duplicate_keys_are_found_in_a_huge_header(cpp_demo, tmp_path):
    """200k tensor entries inside the 100 MB header limit, the duplicate last (a quadratic check
    took 90 s here; the timeout is a guard, not a measurement)."""
    entries = {f"t{index}": {"dtype": "U8", "shape": [1], "data_offsets": [index, index + 1]}
               for index in range(200_000)}
    file_bytes = craft_checkpoint({}, "ab" * 32, header_entries=entries, data=b"\0" * 200_000)
    duplicate = file_bytes.replace(b'"t199999":', b'"t7"     :', 1)  # same length, valid JSON
    path = tmp_path / "dup.ckpt"
    path.write_bytes(stamp_checksum(duplicate))
    assert_one_error_line(check(cpp_demo, path, timeout=60), "duplicate key \"t7\"")


def test_names_and_file_text_are_escaped_in_errors(cpp_demo, tiny_v2_model_path, tmp_path):
    fingerprint = json.loads(run_demo(cpp_demo, "--check_model", "--model", tiny_v2_model_path).stdout)["fingerprint"]
    evil = "evil\x1b[31m\nname\u202e\x9b"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(craft_checkpoint({evil: np.zeros(1, np.float32)}, fingerprint))
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", path, "--epochs", 0, expect_ok=False)
    line = assert_one_error_line(result, "unexpected 1 tensor: 'evil\\x1b[31m\\x0aname\\xe2\\x80\\xae\\xc2\\x9b'")
    assert "\x1b" not in line
    wrong_format = tmp_path / "format.ckpt"
    wrong_format.write_bytes(craft_checkpoint({}, "ab" * 32).replace(b"tflite-transfer-checkpoint", b"x\\u001b[2Jxxxxxxxxxxxxxxxxxxx"))
    assert_one_error_line(check(cpp_demo, wrong_format), "checksum does not match")
    listing = json.loads(check(cpp_demo, path).stdout)  # --check_checkpoint prints ASCII JSON
    assert list(listing["tensors"]) == [evil]


def test_writes_are_atomic_through_symlinks_with_the_umask(cpp_demo, tiny_v2_model_path, tmp_path):
    def save(target, umask=0o022):
        run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", 0, "--checkpoint", target,
                 preexec_fn=lambda: os.umask(umask))

    save(tmp_path / "new.ckpt", umask=0o027)
    assert stat.S_IMODE(os.stat(tmp_path / "new.ckpt").st_mode) == 0o640  # not mkstemp's 0600
    os.chmod(tmp_path / "new.ckpt", 0o604)
    save(tmp_path / "new.ckpt")
    assert stat.S_IMODE(os.stat(tmp_path / "new.ckpt").st_mode) == 0o604  # a replaced file keeps its mode

    (tmp_path / "real").mkdir()
    (tmp_path / "link.ckpt").symlink_to("real/target.ckpt")  # dangling until the first save
    save(tmp_path / "link.ckpt")
    assert (tmp_path / "link.ckpt").is_symlink()
    assert (tmp_path / "real" / "target.ckpt").read_bytes() == (tmp_path / "new.ckpt").read_bytes()

    # Leftovers of killed writers are removed; a temp file a live writer holds (flock) is kept.
    stale = [tmp_path / ".new.ckpt.abcdefgh.tmp", tmp_path / ".new.ckpt.zz_00000.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    live = tmp_path / ".new.ckpt.live0000.tmp"
    with open(live, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        unrelated = tmp_path / ".other.ckpt.abcdefgh.tmp"
        unrelated.write_bytes(b"")
        save(tmp_path / "new.ckpt")
        assert not any(path.exists() for path in stale)
        assert live.exists() and unrelated.exists()
    assert_one_error_line(run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", 0, "--checkpoint",
                                   tmp_path / "real", expect_ok=False), "could not write checkpoint", "directory")


def test_restored_values_are_checked_for_meaning(cpp_demo, tiny_v2_model_path, cpp_checkpoint, tmp_path):
    data = cpp_checkpoint.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    state = {}
    for name, entry in header.items():
        if name != "__metadata__":
            begin, end = entry["data_offsets"]
            state[name] = np.frombuffer(data[8 + length + begin:8 + length + end],
                                        {"F32": np.float32, "I32": np.int32}[entry["dtype"]]).reshape(entry["shape"])
    fingerprint = header["__metadata__"]["model_fingerprint"]
    output = tmp_path / "out.ckpt"
    output.write_bytes(b"previous")
    for name, value, message in [("learning_rate", np.float32(-1), "must be finite, > 0 and <= 1e+06, got -1"),
                                 ("learning_rate", np.float32(0), "got 0"),
                                 ("learning_rate", np.float32(1e38), "got 1e+38"),
                                 ("step", np.int32(-5), "step -5 is outside [0, 2147483646]"),
                                 ("step", np.int32(2**31 - 1), "step 2147483647 is outside")]:
        bad = dict(state, **{name: np.array([value])})
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(craft_checkpoint(bad, fingerprint))
        result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", path, "--epochs", 0,
                          "--checkpoint", output, expect_ok=False)
        assert_one_error_line(result, f"state '{name}'", message)
        assert output.read_bytes() == b"previous"
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--learning_rate", "1e39", "--epochs", 0,
                      expect_ok=False)
    assert_one_error_line(result, "learning rate must be finite")
