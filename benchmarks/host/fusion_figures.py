"""Fusion figures in one run: file sizes, `infer` latency against the base alone, and the
peak RSS of fresh processes (base alone vs the fused model running every signature).

    python -m benchmarks.host.fusion_figures [--alpha 1.0] [--image_size 224] [--runs 50]

The processes that measure memory import only numpy and ai_edge_litert (as an app would);
peak RSS is the child's own high-water mark (VmHWM in /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

_CHILD = r"""
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
image = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32) * 255
interpreter = Interpreter(model_path=path, num_threads=1)
if mode == "base":
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
else:
    run = lambda key, **kw: interpreter.get_signature_runner(key)(**kw)
    bottleneck = run("load", image=image)["bottleneck"]
    label = np.zeros(1, np.int32)
    run("infer", image=image); run("train", bottleneck=bottleneck, label=label)
    run("train_images", image=image, label=label)
    state = run("save"); run("restore", **state); run("initialize")
    run("set_learning_rate", learning_rate=np.array([0.01], np.float32))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec from the (TensorFlow-sized)
# parent, while VmHWM belongs to the new address space exec made.
hwm_kib = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mib": hwm_kib / 1024}))
"""


def _peak_rss(path: str, mode: str, size: int) -> float:
    output = subprocess.run([sys.executable, "-c", _CHILD, path, mode, str(size)], check=True,
                            capture_output=True, stdin=subprocess.DEVNULL, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_rss_mib"]


def _latencies(base_path: str, fused_path: str, size: int, runs: int) -> dict[str, list[float]]:
    """Invoke times of the base alone and of the fused infer, interleaved so drift hits both."""
    from ai_edge_litert.interpreter import Interpreter

    image = np.random.default_rng(1).random((1, size, size, 3), dtype=np.float32) * 255
    base = Interpreter(model_path=base_path, num_threads=1)
    base.allocate_tensors()
    base.set_tensor(base.get_input_details()[0]["index"], image)
    fused = Interpreter(model_path=fused_path, num_threads=1)
    infer = fused.get_signature_runner("infer")
    infer(image=image)
    times = {"base alone": [], "fused infer": []}
    for _ in range(runs):
        start = time.perf_counter(); base.invoke(); times["base alone"].append(time.perf_counter() - start)
        start = time.perf_counter(); infer(image=image); times["fused infer"].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--output", default=os.path.join("benchmarks", "results", "fusion_figures.json"))
    args = parser.parse_args()
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler import pipeline

    base = sources.load_base(sources.BaseOptions(alpha=args.alpha, image_size=args.image_size), lambda m: None)
    result = pipeline.compile_from_base(base, pipeline.HeadOptions(), verify_steps=0, progress=lambda m: None)
    with tempfile.TemporaryDirectory() as directory:
        base_path, fused_path = os.path.join(directory, "base.tflite"), os.path.join(directory, "fused.tflite")
        open(base_path, "wb").write(base.tflite)
        open(fused_path, "wb").write(result.model_bytes)
        times = _latencies(base_path, fused_path, args.image_size, args.runs)
        rss = {"base alone (invoke)": _peak_rss(base_path, "base", args.image_size),
               "fused (every signature)": _peak_rss(fused_path, "fused", args.image_size)}
    medians = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    figures = {
        "base": base.description, "runs": args.runs, "threads": 1, "interpreter": "ai_edge_litert",
        "size_bytes": {"base": len(base.tflite), "head": len(result.head.tflite), "fused": len(result.model_bytes)},
        "latency_ms": {k: {"median": medians[k], "min": min(v) * 1e3, "max": max(v) * 1e3} for k, v in times.items()},
        "infer_over_base": medians["fused infer"] / medians["base alone"],
        "peak_rss_mib": rss,
        "rss_ratio": rss["fused (every signature)"] / rss["base alone (invoke)"],
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(figures, handle, indent=2)
    sizes = figures["size_bytes"]
    print(f"base: {base.description}")
    print(f"size: base {sizes['base'] / 1e6:.3f} MB + head {sizes['head'] / 1e6:.3f} MB -> fused {sizes['fused'] / 1e6:.3f} MB")
    for key, value in figures["latency_ms"].items():
        print(f"latency {key}: median {value['median']:.2f} ms (min {value['min']:.2f}, max {value['max']:.2f}; {args.runs} runs)")
    print(f"fused infer / base alone: {figures['infer_over_base']:.3f}")
    for key, value in rss.items():
        print(f"peak RSS {key}: {value:.1f} MiB")
    print(f"peak RSS ratio fused / base: {figures['rss_ratio']:.3f}   (written to {args.output})")


if __name__ == "__main__":
    main()
