"""Timing and memory helpers shared by every child script (standard library + numpy only)."""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def time_calls(calls, min_runs: int, max_runs: int, budget_s: float, warmup: int = 2) -> list[list[float]]:
    """Microseconds per call of each zero-argument callable, run round-robin (so drift and
    noise from other processes hit all of them alike) until every one has `min_runs` and the
    budget is spent, or `max_runs`. Only the call itself is inside the timed region."""
    for _ in range(warmup):
        for call in calls:
            call()
    times = [[] for _ in calls]
    clock = time.perf_counter
    start = clock()
    runs = 0
    while runs < max_runs and (runs < min_runs or clock() - start < budget_s):
        for call, sink in zip(calls, times):
            before = clock()
            call()
            sink.append((clock() - before) * 1e6)
        runs += 1
    return times


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries ru_maxrss across
    fork+exec from a large parent (the benchmark driver imports TensorFlow)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_input(spec: dict, seed: int) -> np.ndarray:
    """Deterministic inputs, so every peer trains on the same bottlenecks and labels."""
    rng = np.random.default_rng(seed)
    shape, fill = tuple(spec.get("shape", ())), spec.get("fill", "uniform")
    if fill == "string":
        return np.array(spec["value"].encode(), dtype=np.bytes_)
    if fill == "labels":
        labels = rng.integers(0, spec["classes"], size=shape)
        if spec.get("one_hot"):
            return np.eye(spec["classes"], dtype=spec.get("dtype", "float32"))[labels]
        return labels.astype(spec.get("dtype", "int32"))
    if fill == "constant":
        return np.full(shape, spec["value"], dtype=spec.get("dtype", "float32"))
    low, high = spec.get("range", (0.0, 1.0))
    return (low + (high - low) * rng.random(shape)).astype(spec.get("dtype", "float32"))


def summary(times_us: list[float]) -> dict:
    ordered = sorted(times_us)
    return {"runs": len(ordered), "median_us": float(np.median(ordered)), "min_us": ordered[0],
            "max_us": ordered[-1]}


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def error_text(error: BaseException) -> str:
    """The first informative lines of an interpreter error (they run to dozens of lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: " + " ".join(lines[:4])[:600]
