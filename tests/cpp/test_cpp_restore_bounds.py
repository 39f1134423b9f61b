"""Restoring a checkpoint into a model reads no more than the model's state: a 1 GiB sparse
checkpoint with a valid checksum (one tensor declared huge) used to be hashed and loaded in full
(1,059 MB, 43 s) before the model check refused it. Now its header is checked against the model
(fingerprint, names, shapes, dtypes) before any tensor data is read, in bounded memory, and a
damaged file of the right size is still reported as damaged (the checksum comes first there)."""

from __future__ import annotations

import resource

from benchmarks.fuzz.attacks import sparse_checkpoint
from tests.fixtures.cpp_runtime import assert_one_error_line, model_metadata, run_demo

GIB = 2**30


def bytes_read_by_children() -> int:
    """rchar of this process, which includes the reads of every child it has waited for."""
    with open("/proc/self/io", encoding="ascii") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def state_entries(metadata) -> list[tuple[str, str, list[int]]]:
    return [(e.name, {"float32": "F32", "int32": "I32"}[e.dtype], list(e.shape)) for e in metadata.state]


def test_a_valid_1_gib_checkpoint_is_refused_from_its_header(cpp_demo, tiny_v2_model_path, tmp_path):
    metadata = model_metadata(open(tiny_v2_model_path, "rb").read())
    kernel = metadata.entries_with_role("kernel")[0]
    units, huge = kernel.shape[0], GIB // 4 // kernel.shape[0]
    entries = [(name, dtype, shape if name != kernel.name else [units, huge])
               for name, dtype, shape in state_entries(metadata)]
    path = tmp_path / "huge.ckpt"
    size = sparse_checkpoint(path, metadata.fingerprint, entries)
    assert size > GIB
    cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (256 * 2**20, 256 * 2**20))  # noqa: E731
    before = bytes_read_by_children()
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", path, "--epochs", 0,
                      expect_ok=False, timeout=300, preexec_fn=cap)
    read = bytes_read_by_children() - before
    assert_one_error_line(result, "does not fit the model", f"'{kernel.name}' is [{units}, {huge}] float32")
    assert read < 64 * 2**20, f"{read} bytes read for a {size}-byte checkpoint"


def test_another_models_huge_checkpoint_names_the_fingerprint(cpp_demo, tiny_v2_model_path, tmp_path):
    metadata = model_metadata(open(tiny_v2_model_path, "rb").read())
    path = tmp_path / "other.ckpt"
    sparse_checkpoint(path, "ab" * 32, [("w", "F32", [64 * 2**20])])
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", path, "--epochs", 0,
                      expect_ok=False, timeout=300)
    assert_one_error_line(result, "was written by another model")
    assert metadata.fingerprint[:12] in result.stderr


def test_a_damaged_file_of_the_right_size_is_reported_as_damaged(cpp_demo, tiny_v2_model_path, tmp_path):
    good = tmp_path / "good.ckpt"
    run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", 0, "--checkpoint", good)
    data = bytearray(good.read_bytes())
    at = data.index(b'"model_fingerprint":"') + len(b'"model_fingerprint":"')
    data[at] ^= 0x01  # the fingerprint itself damaged: the checksum says so before the model check
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(bytes(data))
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", damaged, "--epochs", 0, expect_ok=False)
    assert_one_error_line(result, "checksum does not match its content")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:-4])  # the wrong size: the header says what is missing
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--restore", truncated, "--epochs", 0,
                      expect_ok=False)
    assert_one_error_line(result, "corrupt or incomplete", "truncated file?")
