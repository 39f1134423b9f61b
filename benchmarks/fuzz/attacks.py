"""The Python runtime's hardening attacks (python -m benchmarks.fuzz runs them after its bit-flip
campaigns and puts their counts in its report; the C++ runtime's are benchmarks/fuzz/cpp_attacks.py).
One function per attack; each returns {"title", "cases", "outcomes": {outcome: count},
"examples", "seconds", ...figures}. An outcome starting with FAILED, RAW, ABORT or containing
STATE CHANGED is a finding; every other outcome is the behaviour wanted.

  concurrent saves        K processes saving one checkpoint path at once, R saves each: all succeed,
                          the file reads back whole, no temporary file is left
  long names              checkpoint file names of 200-256 bytes (two-byte characters): every one up
                          to 255 saves and restores, 256 is one clean error
  oversized checkpoints   valid checksum, one tensor declared huge (sparse files of 16 MiB-1 GiB),
                          restored into the model in a child process: refused with one line; bytes
                          read, peak memory and time recorded
  API numbers             fit(batch_size=10**12), fit(epochs=10**12), set_learning_rate(10**400), a
                          single step on 3e38 features, metadata sizes of 1e30 with the digest off:
                          one project error, and a refusal changes nothing
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 600


def _result(title: str, outcomes: collections.Counter, examples: dict, started: float, **figures) -> dict:
    return {"title": title, "cases": sum(outcomes.values()), "outcomes": dict(outcomes.most_common()),
            "examples": examples, "seconds": round(time.monotonic() - started, 1), **figures}


def _python(script: str, *arguments: str, timeout: float = CHILD_TIMEOUT_S) -> subprocess.CompletedProcess | None:
    """A child Python (the runtime as installed for this interpreter), killed on timeout."""
    try:
        return subprocess.run([sys.executable, "-c", script, *map(str, arguments)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None


_SAVER = textwrap.dedent("""
    import sys, time
    from tflite_transfer.runtime import TransferModel
    from tflite_transfer.runtime.errors import TransferError
    model_path, target, saves, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    model = TransferModel.open(model_path)
    while time.time() < start:  # every process starts saving at the same moment
        time.sleep(0.001)
    for _ in range(saves):
        try:
            model.save_checkpoint(target)
            print("saved", flush=True)
        except TransferError as error:
            print("FAILED: " + str(error).replace("\\n", " ")[:300], flush=True)
""")


def concurrent_saves(model_path: str, work: Path, processes: int = 2, saves: int = 100) -> dict:
    from tflite_transfer.runtime.checkpoint import read_checkpoint  # noqa: PLC0415

    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    target = work / "shared.ckpt"
    start = time.time() + 5.0  # after every child has imported the runtime and opened the model
    children = [subprocess.Popen([sys.executable, "-c", _SAVER, model_path, str(target), str(saves), str(start)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, cwd=ROOT) for _ in range(processes)]
    try:
        for child in children:
            stdout, _ = child.communicate(timeout=CHILD_TIMEOUT_S)
            lines = stdout.splitlines()
            for line in lines:
                outcome = "saved" if line == "saved" else "FAILED: " + _words(line.removeprefix("FAILED: "))
                outcomes[outcome] += 1
                if outcome != "saved":
                    examples.setdefault(outcome, line[:300])
            if len(lines) < saves:
                outcomes[f"FAILED: the process ended after {len(lines)} saves (exit {child.returncode})"] += 1
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    try:
        read_checkpoint(target)
        whole = "reads back"
    except Exception as error:  # noqa: BLE001 (a finding, reported)
        whole = f"FAILED to read back: {type(error).__name__}"
    leftovers = [name for name in os.listdir(work) if name.startswith(".shared.ckpt.")]
    return _result(f"attack: concurrent saves of one path ({processes} processes x {saves} saves)", outcomes,
                   examples, started, final_file=whole, leftover_temporaries=len(leftovers))


def long_names(model_path: str, work: Path) -> dict:
    from tflite_transfer.runtime import TransferModel  # noqa: PLC0415
    from tflite_transfer.runtime.errors import TransferError  # noqa: PLC0415

    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    folder = work / "long"
    folder.mkdir()
    model = TransferModel.open(model_path)
    for length in list(range(200, 257)):
        name = "\u00e9" * ((length - 5) // 2) + "x" * ((length - 5) % 2) + ".ckpt"
        assert len(name.encode()) == length
        target = folder / name
        expected_ok = length <= 255
        try:
            model.save_checkpoint(target)
            model.restore_checkpoint(target)
            outcome = "saved and restored" if expected_ok else "FAILED: a 256-byte name was accepted"
        except TransferError as error:
            outcome = "FAILED: " + _words(str(error)) if expected_ok else f"refused: {type(error).__name__}"
            if expected_ok:
                examples.setdefault(outcome, f"{length} bytes: {str(error)[-200:]}")
        outcomes[f"{'<= 255' if expected_ok else '256'} bytes: {outcome}"] += 1
    leftovers = [entry for entry in os.listdir(folder) if entry.endswith(".tmp")]
    return _result("attack: long checkpoint file names (200-256 bytes, two-byte characters)", outcomes, examples,
                   started, leftover_temporaries=len(leftovers))


def sparse_checkpoint(path: Path, fingerprint: str, entries: list[tuple[str, str, list[int]]]) -> int:
    """A checkpoint of zeros with a valid checksum (streamed over the zeros), written as a sparse
    file; returns its size."""
    header, offset = {"__metadata__": {"format": "tflite-transfer-checkpoint", "format_version": "2",
                                       "model_fingerprint": fingerprint, "checksum": "0" * 64}}, 0
    item = {"F32": 4, "I32": 4}
    for name, code, shape in entries:
        size = item[code]
        for dimension in shape:
            size *= dimension
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    digest, zeros, left = hashlib.sha256(struct.pack("<Q", len(text)) + text), bytes(1 << 20), offset
    while left:
        digest.update(zeros[:min(left, len(zeros))])
        left -= min(left, len(zeros))
    text = text.replace(b'"checksum":"' + b"0" * 64, b'"checksum":"' + digest.hexdigest().encode())
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        handle.truncate(8 + len(text) + offset)
    return 8 + len(text) + offset


_RESTORER = textwrap.dedent("""
    import json, sys, time
    from tflite_transfer.runtime import TransferModel
    from tflite_transfer.runtime.errors import TransferError
    model = TransferModel.open(sys.argv[1])
    def io():
        with open("/proc/self/io") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))
    read_before, began = io(), time.monotonic()
    try:
        model.restore_checkpoint(sys.argv[2])
        outcome = "ACCEPTED"
    except TransferError as error:
        outcome = f"refused: {type(error).__name__}: {error}"
    seconds = time.monotonic() - began
    peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
    print(json.dumps({"outcome": outcome, "bytes_read": io() - read_before, "seconds": round(seconds, 2),
                      "peak_mib": round(peak / 1024, 1)}))
""")


def oversized_checkpoints(model_path: str, work: Path, sizes_mib: tuple[int, ...] = (16, 128, 1024)) -> dict:
    from tflite_transfer.runtime import TransferModel  # noqa: PLC0415

    started, outcomes, examples, runs = time.monotonic(), collections.Counter(), {}, []
    model = TransferModel.open(model_path)
    codes = {"float32": "F32", "int32": "I32"}
    kernel = next(entry for entry in model.metadata.state if entry.role == "kernel")
    for mib in sizes_mib:
        for owner, label in ((model.metadata.fingerprint, "this model's fingerprint"), ("ab" * 32, "another one")):
            huge = [kernel.shape[0], mib * 2**20 // 4 // kernel.shape[0]]
            entries = [(entry.name, codes[entry.dtype], huge if entry.name == kernel.name else list(entry.shape))
                       for entry in model.metadata.state]
            path = work / f"oversized-{mib}.ckpt"
            size = sparse_checkpoint(path, owner, entries)
            result = _python(_RESTORER, model_path, path)
            path.unlink()
            if result is None:
                outcome, run = "FAILED: timeout", {}
            elif result.returncode != 0 or not result.stdout.strip():
                outcome, run = f"RAW exit {result.returncode}", {}
                examples.setdefault(outcome, result.stderr[-300:])
            else:
                run = json.loads(result.stdout.strip().splitlines()[-1])
                run["outcome"] = run["outcome"].replace(str(path), "FILE")
                message = run["outcome"].split(": ", 2)[-1].split(" is corrupt or incomplete: ")[-1]
                outcome = run["outcome"] if run["outcome"] == "ACCEPTED" else "refused: " + _words(message, 10)
                examples.setdefault(outcome, run["outcome"][:300])
            outcomes[outcome] += 1
            runs.append({"file_mib": round(size / 2**20, 1), "fingerprint": label, "outcome": outcome, **run})
    return _result("attack: oversized checkpoints with valid checksums (sparse, one tensor declared huge), "
                   "restored in a child", outcomes, examples, started, runs=runs)


_API_NUMBERS = textwrap.dedent("""
    import json, sys, traceback
    import numpy as np
    from tflite_transfer.runtime import TransferModel
    from tflite_transfer.runtime.errors import TransferError

    def state_of(model):
        return {name: value.tobytes() for name, value in model.get_state().items()}

    def attempt(model, call):
        before = state_of(model) if model is not None else None
        try:
            call()
            outcome = "accepted"
        except TransferError as error:
            outcome = f"refused: {type(error).__name__}"
        except Exception as error:
            frame = traceback.extract_tb(error.__traceback__)[-1]
            outcome = f"RAW {type(error).__name__} at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        if model is not None and outcome != "accepted" and state_of(model) != before:
            outcome += " + STATE CHANGED"
        return outcome

    model_path, metadata_models = sys.argv[1], json.loads(sys.argv[2])
    results = {}
    model = TransferModel.open(model_path)
    model.add_bottlenecks(np.ones((4, model.bottleneck_shape[0]), np.float32), [0, 1, 2, 0])
    results["fit(batch_size=10**12)"] = attempt(None, lambda: model.fit(epochs=1, batch_size=10**12, progress=False))
    results["fit(epochs=10**12)"] = attempt(model, lambda: model.fit(epochs=10**12, progress=False))
    results["set_learning_rate(10**400)"] = attempt(model, lambda: model.set_learning_rate(10**400))
    huge = np.full((1, model.bottleneck_shape[0]), 3e38, np.float32)
    results["train_bottlenecks(3e38 features)"] = attempt(model, lambda: model.train_bottlenecks(huge, [0]))
    model.set_learning_rate(1e6)
    large = np.full((1, model.bottleneck_shape[0]), 1e37, np.float32)
    results["train_bottlenecks(1e37 features) at rate 1e6"] = attempt(model, lambda: model.train_bottlenecks(large, [0]))
    def use(path):  # what an app does with a model: open, cache samples, train, predict
        opened = TransferModel.open(path, verify_digest=False)
        opened.add_bottlenecks(np.ones((2, opened.bottleneck_shape[0]), np.float32), [0, 1])
        opened.fit(epochs=1, progress=False)
        opened.predict(np.zeros((1, *opened.image_shape), opened.image_dtype))
    for what, path in metadata_models.items():
        results[f"open with the digest off, metadata {what}"] = attempt(None, lambda: use(path))
    print(json.dumps(results))
""")


def api_numbers(model_path: str, work: Path) -> dict:
    from tflite_transfer.compiler.flatbuffer import model_io  # noqa: PLC0415
    from tflite_transfer.runtime import contract  # noqa: PLC0415

    started, outcomes, examples = time.monotonic(), collections.Counter(), {}
    data = Path(model_path).read_bytes()
    metadata_models = {}
    for key in ("bottleneck_size", "num_outputs", "image_batch", "train_batch"):
        for value, shown in ((1e30, "1e30"), (10**30, "10**30"), (float("inf"), "Infinity")):
            model = model_io.read_model_bytes(data)
            entry = next(m for m in model.metadata if m.name.decode() == contract.METADATA_KEY)
            record = json.loads(model_io.buffer_bytes(model, entry.buffer))
            record[key] = value
            model.buffers[entry.buffer] = model_io.make_buffer(json.dumps(record).encode())
            path = work / f"metadata-{key}-{shown}.tflite"
            path.write_bytes(model_io.write_model_bytes(model))
            metadata_models[f"{key} = {shown}"] = str(path)
    result = _python(_API_NUMBERS, model_path, json.dumps(metadata_models))
    if result is None or result.returncode != 0:
        outcomes["ABORT or RAW: the child failed"] += 1
        examples["child"] = "timeout" if result is None else result.stderr[-500:]
        cases = {}
    else:
        cases = json.loads(result.stdout.strip().splitlines()[-1])
        for case, outcome in cases.items():
            outcomes[outcome] += 1
            if outcome.startswith("RAW") or "STATE CHANGED" in outcome:
                examples.setdefault(outcome, case)
    return _result("attack: absurd numbers through the API (one project error; a refusal changes nothing)",
                   outcomes, examples, started, per_case=cases)


def _words(text: str, count: int = 8) -> str:
    words = "".join(ch if ch.isalnum() or ch == " " else " " for ch in text).split()
    return " ".join(words[:count])


ATTACKS = (concurrent_saves, long_names, oversized_checkpoints, api_numbers)
