"""Our train step: the compiled model's `train` signature in ai-edge-litert, 1 thread,
default op resolver (XNNPACK). Imports numpy and LiteRT only. Also measures this machine's
copy bandwidth and matmul rate in the same process (see benchmarks/speed/bound.py).

load: {"model": path, "inputs": dir}
"""

from __future__ import annotations

import time

import numpy as np

from protocol import load_inputs, serve


def load(request):
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    if request.get("probe") == "machine":
        return None, measure_machine(request)
    interpreter = Interpreter(model_path=request["model"], num_threads=1)
    return {"train": interpreter.get_signature_runner("train"), "inputs": request["inputs"],
            "interpreter": interpreter}, {"runtime": f"ai-edge-litert {version('ai-edge-litert')}"}


def make_step(state, batch):
    bottleneck, label = load_inputs(state["inputs"], batch)
    label = label.astype(np.int32)
    train = state["train"]
    return lambda: train(bottleneck=bottleneck, label=label)


def measure_machine(request) -> dict:
    """Copy bandwidth (bytes read + written per second) at each size, best of `repeats`, and
    a 1-thread float32 matmul rate (numpy's BLAS; the driver sets its thread count to 1)."""
    bandwidth = {}
    for size in request["copy_bytes"]:
        source = np.ones(size // 4, np.float32)
        target = np.empty_like(source)
        repeats = max(3, min(200, int(2e9 // size)))
        best = min(_seconds(lambda: np.copyto(target, source)) for _ in range(repeats))
        bandwidth[str(size)] = 2 * size / best
    a = np.random.default_rng(0).random((512, 1280), dtype=np.float32)
    b = np.random.default_rng(1).random((1280, 1000), dtype=np.float32)
    best = min(_seconds(lambda: a @ b) for _ in range(20))
    return {"copy_bandwidth_bytes_per_s": bandwidth, "matmul_flops_per_s": 2 * 512 * 1280 * 1000 / best}


def _seconds(call) -> float:
    before = time.perf_counter()
    call()
    return time.perf_counter() - before


if __name__ == "__main__":
    serve(load, make_step)
