"""The C++ runtime's hardening attacks, run through its demo (benchmarks/fuzz/cpp_readers.py calls
them and puts their counts in its report). One function per attack; each returns
{"attack", "cases", "outcomes": {outcome: count}, "examples", "seconds", ...figures}, where an
outcome that contains "misbehaved" or "failed" is a finding.

  concurrent saves      rounds of K demo processes saving one path at once: every save must succeed
  long names            file names of every length up to 255 bytes save; 256 is one clean error
  oversized checkpoints valid checksum, one tensor declared huge (sparse files up to 1 GiB):
                        refused with one line, bytes read and peak memory recorded
  non-regular targets   a FIFO, a device node of our own (never a real device), a socket, a
                        directory, a symlink to the FIFO: refused, left as they were
  digest-off structure  seeded bit flips of the model, opened with --skip_digest_check and run
                        (load + train): a clean error or a run, never a signal or a hang
  demo numbers          --epochs beyond any integer, an empty training file: one error line
"""

from __future__ import annotations

import collections
import os
import random
import socket
import stat
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.fuzz.attacks import sparse_checkpoint
from benchmarks.fuzz.damage import damage


def classify(returncode: int | None, stderr: str, accepted_ok: bool = True) -> str:
    if returncode is None:
        return "misbehaved: timeout"
    lines = stderr.splitlines()
    if returncode == 0:
        return "accepted" if accepted_ok else "failed: accepted"
    if returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("error: ") and lines[0].isprintable():
        return "clean error"
    return f"misbehaved: exit {returncode}, {len(lines)} stderr lines"


def run(command: list[str], timeout: float) -> tuple[int | None, str, dict]:
    """(exit status or None on timeout, stderr, {"maxrss_kib", "rchar"}) of one demo run."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               errors="surrogateescape")
    started = _rchar()
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None, "", {}
    # communicate() reaped it: this process's rchar now includes the child's reads.
    return process.returncode, stderr, {"rchar": _rchar() - started}


def _rchar() -> int:
    with open("/proc/self/io", encoding="ascii") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def _result(attack: str, outcomes: collections.Counter, examples: dict, started: float, **figures) -> dict:
    return {"attack": attack, "cases": sum(outcomes.values()), "outcomes": dict(outcomes), "examples": examples,
            "seconds": round(time.monotonic() - started, 1), **figures}


def concurrent_saves(demo: str, model: str, work: Path, rounds: int, processes: int) -> dict:
    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    target = work / "shared.ckpt"
    command = [demo, "--model", model, "--epochs", "0", "--checkpoint", str(target)]
    for _ in range(rounds):
        running = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for _ in range(processes)]
        for process in running:
            try:
                _, stderr = process.communicate(timeout=120)
                outcome = "saved" if process.returncode == 0 else "failed: " + classify(process.returncode, stderr)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                outcome, stderr = "failed: timeout", ""
            outcomes[outcome] += 1
            if outcome != "saved":
                examples.setdefault(outcome, stderr.strip()[-300:])
    leftovers = [name for name in os.listdir(work) if name.startswith(".shared.ckpt.")]
    return _result(f"concurrent saves ({processes} processes x {rounds} rounds, one path)", outcomes, examples,
                   started, leftover_temporaries=len(leftovers))


def long_names(demo: str, model: str, work: Path, timeout: float) -> dict:
    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    folder = work / "long"
    folder.mkdir()
    for length in list(range(200, 256)) + [256]:
        target = folder / ("é" * ((length - 5) // 2) + "x" * ((length - 5) % 2) + ".ckpt")
        assert len(target.name.encode()) == length
        code, stderr, _ = run([demo, "--model", model, "--epochs", "0", "--checkpoint", str(target)], timeout)
        expected_ok = length <= 255
        outcome = classify(code, stderr)
        if expected_ok:
            outcome = "saved" if code == 0 and target.is_file() else "failed: " + outcome
        elif outcome != "clean error":
            outcome = "failed: " + outcome
        outcomes[f"{'<= 255' if expected_ok else '256'} bytes: {outcome}"] += 1
        if outcome.startswith("failed"):
            examples.setdefault(outcome, f"{length} bytes: {stderr.strip()[-300:]}")
    leftovers = [name for name in os.listdir(folder) if name.endswith(".tmp")]
    return _result("long file names (200-256 bytes, two-byte characters)", outcomes, examples, started,
                   leftover_temporaries=len(leftovers))


def oversized_checkpoints(demo: str, model: str, state: list[dict], fingerprint: str, work: Path,
                          timeout: float) -> dict:
    started, outcomes, examples, figures = time.monotonic(), collections.Counter(), {}, []
    codes = {"float32": "F32", "int32": "I32"}
    kernel = next(entry for entry in state if entry["role"] == "kernel")
    for mib in (16, 128, 1024):
        for owner, label in ((fingerprint, "this model's fingerprint"), ("ab" * 32, "another fingerprint")):
            huge = [kernel["shape"][0], mib * 2**20 // 4 // kernel["shape"][0]]
            entries = [(e["name"], codes[e["dtype"]], huge if e["name"] == kernel["name"] else e["shape"]) for e in state]
            path = work / f"oversized-{mib}.ckpt"
            size = sparse_checkpoint(path, owner, entries)
            began = time.monotonic()
            code, stderr, io = run([demo, "--model", model, "--restore", str(path), "--epochs", "0"], timeout)
            outcome = classify(code, stderr, accepted_ok=False)
            outcomes[outcome] += 1
            figures.append({"file_bytes": size, "owner": label, "outcome": outcome,
                            "bytes_read": io.get("rchar"), "seconds": round(time.monotonic() - began, 2)})
            if outcome != "clean error":
                examples.setdefault(outcome, stderr.strip()[-300:])
            path.unlink()
    return _result("valid-checksum oversized checkpoints restored into the model", outcomes, examples, started,
                   runs=figures)


def non_regular_targets(demo: str, model: str, work: Path, timeout: float) -> dict:
    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    folder = work / "nodes"
    folder.mkdir()
    os.mkfifo(folder / "fifo.ckpt")
    os.mknod(folder / "device.ckpt", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # our own node, in our folder
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "socket.ckpt"))
    (folder / "directory.ckpt").mkdir()
    (folder / "link.ckpt").symlink_to("fifo.ckpt")
    try:
        for name in ("fifo.ckpt", "device.ckpt", "socket.ckpt", "directory.ckpt", "link.ckpt"):
            before = os.lstat(folder / name)
            code, stderr, _ = run([demo, "--model", model, "--epochs", "0", "--checkpoint", str(folder / name)], timeout)
            after = os.lstat(folder / name)
            intact = (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
            outcome = classify(code, stderr, accepted_ok=False)
            outcome = outcome if intact else f"failed: {name} replaced ({outcome})"
            outcomes[f"{name}: {outcome}"] += 1
            if outcome != "clean error":
                examples.setdefault(name, stderr.strip()[-300:])
    finally:
        listener.close()
    return _result("non-regular checkpoint targets (own FIFO, device node, socket, directory, symlink)",
                   outcomes, examples, started)


def digest_off_structure(demo: str, model: str, work: Path, samples: int, seed: int, timeout: float) -> dict:
    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    data = Path(model).read_bytes()
    images, labels = work / "images.npy", work / "labels.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (3, 16, 12, 3), dtype=np.uint8))
    np.save(labels, np.array([0, 1, 2]))
    rng = random.Random(seed)
    path = work / "damaged.tflite"
    for _ in range(samples):
        bit = rng.randrange(len(data) * 8)
        path.write_bytes(damage(data, ["flip", bit]))
        code, stderr, _ = run([demo, "--model", str(path), "--skip_digest_check", "--images", str(images),
                               "--labels", str(labels), "--epochs", "1"], timeout)
        outcome = classify(code, stderr)
        outcomes[outcome] += 1
        if "misbehaved" in outcome:
            examples.setdefault(outcome, f"flip {bit}: {stderr.strip()[-300:]}")
    return _result(f"model opened with --skip_digest_check, then load + train: {samples} seeded bit flips",
                   outcomes, examples, started)


def demo_numbers(demo: str, model: str, work: Path, timeout: float) -> dict:
    """Each case has valid training data, so only the number (or the empty file) can be refused;
    the refusal must name it."""
    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    np.save(work / "one.npy", np.ones((1, 7), np.float32))
    np.save(work / "one_label.npy", np.zeros(1, np.int64))
    np.save(work / "empty.npy", np.zeros((0, 7), np.float32))
    np.save(work / "no_labels.npy", np.zeros(0, np.int64))
    one = ["--bottlenecks", str(work / "one.npy"), "--labels", str(work / "one_label.npy")]
    cases = {"--epochs 99999999999999999999": (one + ["--epochs", "99999999999999999999"], "--epochs"),
             "--epochs -1": (one + ["--epochs", "-1"], "--epochs"),
             "--batch_size 1e3": (one + ["--batch_size", "1e3"], "--batch_size"),
             "--num_threads 99999999999999999999": (one + ["--num_threads", "99999999999999999999", "--epochs", "1"],
                                                    "--num_threads"),
             "empty training file": (["--bottlenecks", str(work / "empty.npy"), "--labels", str(work / "no_labels.npy"),
                                      "--epochs", "3"], "no samples")}
    for name, (flags, fragment) in cases.items():
        code, stderr, _ = run([demo, "--model", model, *flags], timeout)
        outcome = classify(code, stderr, accepted_ok=False)
        if outcome == "clean error" and fragment not in stderr:
            outcome = "failed: an error about something else"
        outcomes[f"{name}: {outcome}"] += 1
        if outcome != "clean error":
            said = "timed out" if code is None else f"exit {code}, nothing said"
            examples.setdefault(name, stderr.strip()[-300:] or f"({said})")
    return _result("demo numbers and training data", outcomes, examples, started)
