"""Bounded fuzzing of the C++ checkpoint reader and model open, through the demo's --check_*
modes (the long campaign in benchmarks/fuzz/ drives the same command lines). Every damaged
file must give exit status 1 and one printable 'error:' line: no crash (signal), no hang
(timeout), and no single-bit flip accepted (the checksum and the digest see every bit)."""

from __future__ import annotations

import random
import struct
import subprocess
from collections import Counter
from pathlib import Path

from tests.fixtures.cpp_runtime import run_demo

SEED = 20261201


def outcome(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.splitlines()
    if result.returncode == 0:
        return "accepted"
    if result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and lines[0].isprintable():
        return "clean error"
    return f"misbehaved (exit {result.returncode}): {result.stderr[-300:]!r}"


def run_cases(demo: str, cases: list[tuple[str, bytes]], tmp_path: Path, *mode: str) -> Counter:
    counts = Counter()
    path = tmp_path / "case.bin"
    for label, data in cases:
        path.write_bytes(data)
        # The timeout guards against a hang; it is not a speed measurement.
        result = run_demo(demo, *mode, path, expect_ok=False, timeout=60)
        kind = outcome(result)
        assert kind == "clean error", (label, kind)
        counts[kind] += 1
    return counts


def test_damaged_checkpoints_give_clean_errors(cpp_demo, tiny_v2_model_path, tmp_path):
    good_path = tmp_path / "good.ckpt"
    run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", 0, "--checkpoint", good_path)
    good = good_path.read_bytes()
    rng = random.Random(SEED)
    cases = []
    for bit in rng.sample(range(len(good) * 8), 150):  # single-bit flips anywhere in the file
        data = bytearray(good)
        data[bit // 8] ^= 1 << (bit % 8)
        cases.append((f"flip bit {bit}", bytes(data)))
    for size in sorted(rng.sample(range(len(good)), 20)) + [0, 7, 8]:  # truncations
        cases.append((f"truncated to {size}", good[:size]))
    (header_length,) = struct.unpack("<Q", good[:8])
    for lie in (0, 1, header_length - 8, header_length + 8, len(good), 2**32, 100_000_001, 2**63, 2**64 - 1):
        cases.append((f"length field {lie}", struct.pack("<Q", lie) + good[8:]))
    cases.append(("appended byte", good + b"\0"))
    counts = run_cases(cpp_demo, cases, tmp_path, "--check_checkpoint")
    assert counts == Counter({"clean error": len(cases)})
    print(f"checkpoint fuzz: {len(cases)} cases, {dict(counts)}")


def test_damaged_models_give_clean_errors(cpp_demo, tiny_v2_model_path, tmp_path):
    good = Path(tiny_v2_model_path).read_bytes()
    rng = random.Random(SEED + 1)
    cases = []
    for bit in rng.sample(range(len(good) * 8), 80):
        data = bytearray(good)
        data[bit // 8] ^= 1 << (bit % 8)
        cases.append((f"flip bit {bit}", bytes(data)))
    for size in sorted(rng.sample(range(len(good)), 10)) + [0, 4, 8]:
        cases.append((f"truncated to {size}", good[:size]))
    counts = run_cases(cpp_demo, cases, tmp_path, "--check_model", "--model")
    assert counts == Counter({"clean error": len(cases)})
    print(f"model fuzz: {len(cases)} cases, {dict(counts)}")


def test_a_sparse_huge_tensor_and_a_fifo_give_clean_errors(cpp_demo, tmp_path):
    """A sparse 256 MiB file whose header declares one 256 MiB tensor (consistent sizes, wrong
    checksum): the checksum is streamed in bounded memory (address space capped at 128 MiB; the
    demo needs < 64 MiB, so reading or allocating the tensor first would fail differently).
    A FIFO: refused unopened."""
    import json
    import os
    import resource

    header = json.dumps({"__metadata__": {"format": "tflite-transfer-checkpoint", "format_version": "2",
                                          "model_fingerprint": "ab" * 32, "checksum": "0" * 64},
                         "w": {"dtype": "U8", "shape": [2**28], "data_offsets": [0, 2**28]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    sparse = tmp_path / "sparse.ckpt"
    with open(sparse, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(8 + len(header) + 2**28)
    cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (2**27, 2**27))  # noqa: E731
    result = run_demo(cpp_demo, "--check_checkpoint", sparse, expect_ok=False, timeout=120, preexec_fn=cap)
    assert outcome(result) == "clean error" and "checksum does not match" in result.stderr, result.stderr
    fifo = tmp_path / "fifo.ckpt"
    os.mkfifo(fifo)
    for mode in (("--check_checkpoint",), ("--check_model", "--model")):
        result = run_demo(cpp_demo, *mode, fifo, expect_ok=False, timeout=30)
        assert outcome(result) == "clean error" and "FIFO" in result.stderr
