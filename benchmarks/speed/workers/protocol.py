"""The line protocol every speed worker speaks (standard library + numpy only, so it runs in
any peer's venv): one JSON request per stdin line, one JSON reply per stdout line.

Requests: {"cmd": "load", "key": K, ...}   -> {"ok": true, ...facts}   build/load a trainer
          {"cmd": "time", "key": K, "batch": B, "budget_ms": T, "min_calls": N}
                                            -> {"median_us", "calls"}  one timed block
          {"cmd": "quit"}
A worker stays alive for the whole sweep, so imports, warm caches and allocations are paid
once and blocks of the same row can alternate between workers (A B A B ...).
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np


def time_block(step, budget_ms: float, min_calls: int) -> dict:
    """Calls `step` until `min_calls` calls and `budget_ms` have passed; the median per call.
    Only the call is inside the timed region."""
    clock = time.perf_counter
    times = []
    deadline = clock() + budget_ms / 1e3
    while len(times) < min_calls or clock() < deadline:
        before = clock()
        step()
        times.append(clock() - before)
    return {"median_us": float(np.median(times)) * 1e6, "calls": len(times)}


def serve(load, make_step) -> None:
    """Answers requests until 'quit'. `load(request) -> (state, facts)`;
    `make_step(state, batch) -> zero-argument callable running one train step`."""
    trainers, steps = {}, {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                break
            if request["cmd"] == "load":
                trainers[request["key"]], facts = load(request)
                reply = {"ok": True, **facts}
            elif request["cmd"] == "time":
                index = (request["key"], request["batch"])
                if index not in steps:
                    steps[index] = make_step(trainers[request["key"]], request["batch"])
                    for _ in range(3):  # warm-up: first calls allocate and pack
                        steps[index]()
                reply = time_block(steps[index], request["budget_ms"], request["min_calls"])
            else:
                reply = {"error": f"unknown command {request['cmd']!r}"}
        except Exception as error:  # noqa: BLE001 - reported to the driver, which carries on
            lines = [l for l in traceback.format_exception_only(type(error), error) if l.strip()]
            reply = {"error": " ".join(l.strip() for l in lines)[:600]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def load_inputs(directory: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The shared bottlenecks (float32 [batch, features]) and class ids (int64 [batch])."""
    return (np.load(f"{directory}/bottleneck_{batch}.npy"), np.load(f"{directory}/label_{batch}.npy"))
