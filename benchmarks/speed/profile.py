"""Where a train step's time goes: an op-level profile of `train` in ai-edge-litert (1 thread,
default XNNPACK), sampled by Linux `perf` with DWARF call stacks.

The Python interpreter binding exposes no op profiler, but the LiteRT wheel keeps its symbol
table, so each sample's call stack names the builtin kernel it is in
(`tflite::ops::builtin::<op>::Eval`) or, inside the XNNPACK delegate, the XNNPACK micro-kernel
(`xnn_f32_gemm...`, `xnn_f32_vsub...`, ...). Each sample is attributed to the innermost
frame that names an op; shares times the step measured without the profiler give microseconds
per op. Sampling (not instrumentation) leaves the step itself unchanged.

    python -m benchmarks.speed.profile MODEL.tflite INPUTS_DIR [BATCH ...]
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WORKERS_DIR = Path(__file__).parent / "workers"
SECONDS = 2.0
FREQUENCY_HZ = 1999

# Leaf-symbol patterns inside XNNPACK (the delegate fuses ops, so the micro-kernel says which).
_XNNPACK_KERNELS = (
    (r"xnn_f32_(i?gemm|ppmm)", "FULLY_CONNECTED / BATCH_MATMUL (XNNPACK gemm)"),
    (r"pack", "weight packing (XNNPACK, dynamic weights)"),
    (r"transpose", "transpose (XNNPACK)"),
    (r"vsub|vrsub", "SUB (XNNPACK)"), (r"vmul", "MUL (XNNPACK)"), (r"vadd", "ADD (XNNPACK)"),
    (r"vdiv|vrdiv", "DIV (XNNPACK)"), (r"vsqrt|rsqrt", "SQRT (XNNPACK)"), (r"vsqr", "SQUARE (XNNPACK)"),
    (r"memmove|memcpy|copy", "copy (XNNPACK)"),
)
_BUILTIN = re.compile(r"tflite::ops::builtin::(\w+)::")


def classify(stack: list[str]) -> str:
    """The op a sample's call stack (leaf first) belongs to."""
    leaf = stack[0] if stack else "?"
    for frame in stack:
        match = _BUILTIN.search(frame)
        if match:
            op = match.group(1).upper()
            if op in ("READ_VARIABLE", "ASSIGN_VARIABLE") or "memmove" not in leaf:
                return op
            return f"{op} (copy)"
        if frame.startswith("xnn_") or "tflite::xnnpack" in frame:
            return next((name for pattern, name in _XNNPACK_KERNELS if re.search(pattern, leaf)),
                        "other XNNPACK")
    if "Eigen" in leaf:
        return "Eigen GEMM (builtin kernel, stack not unwound)"
    if "memmove" in leaf or "memcpy" in leaf:
        return "memcpy (caller not unwound)"
    if any("tflite::" in frame for frame in stack):
        return "interpreter (TFLite, between ops)"
    return "Python, binding and the rest of the process"


def parse_perf_script(text: str) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if len(lines) < 2:
            continue
        stack = [re.sub(r"^[0-9a-f]+ ", "", line).rsplit(" (", 1)[0].split("+0x")[0] for line in lines[1:]]
        counts[classify(stack)] += 1
    return counts


def profile_model(model: str, inputs: str, batch: int) -> dict:
    """Shares of one model's train step at one batch, and µs per category."""
    python, loop = sys.executable, str(WORKERS_DIR / "train_loop.py")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    plain = subprocess.run([python, loop, model, inputs, str(batch), "1.0"], capture_output=True, stdin=subprocess.DEVNULL, text=True,
                           env=environment, cwd=WORKERS_DIR, check=True)
    step_us = json.loads(plain.stdout.strip().splitlines()[-1])["median_us"]
    with tempfile.TemporaryDirectory(prefix="speed-profile-") as workdir:
        data = os.path.join(workdir, "perf.data")
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQUENCY_HZ), "--call-graph",
                        "dwarf,65528", "-o", data, python, loop, model, inputs, str(batch), str(SECONDS)],
                       capture_output=True, stdin=subprocess.DEVNULL, text=True, env=environment, cwd=WORKERS_DIR, check=True)
        script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym"], capture_output=True, stdin=subprocess.DEVNULL,
                                text=True, check=True).stdout
    counts = parse_perf_script(script)
    python_share = counts.pop("Python, binding and the rest of the process", 0)
    step_samples = sum(counts.values())
    categories = {name: {"share": n / step_samples, "us": step_us * n / step_samples}
                  for name, n in counts.most_common()}
    return {"model": Path(model).name, "batch": batch, "step_us": step_us, "samples": step_samples,
            "python_samples": python_share, "categories": categories}


def profile_models(models: dict[str, str], inputs: str, batches=(1, 32)) -> dict:
    if shutil.which("perf") is None:
        return {"error": "Linux perf is not installed (apt-get install linux-perf)"}
    try:
        return {"profiles": [dict(profile_model(path, inputs, batch), optimizer=optimizer)
                             for optimizer, path in models.items() for batch in batches]}
    except subprocess.CalledProcessError as error:
        return {"error": f"perf failed: {(error.stderr or '').strip().splitlines()[-1:]}"}


def render(result: dict) -> str:
    if "error" in result:
        return f"### Where the time goes (op profile)\n\nNot measured: {result['error']}."
    lines = ["### Where the time goes: `train` at 1280 -> 1000 classes, op by op", "",
             "Sampled with `perf` (DWARF stacks) in a process running only `train` (ai-edge-litert, 1 thread, "
             "XNNPACK); each sample is attributed to the op whose kernel it is in; shares of the samples in "
             "the interpreter, times the step measured without the profiler.", ""]
    for profile in result["profiles"]:
        lines += [f"**{profile['optimizer']}, batch {profile['batch']}**: step {profile['step_us']:.0f} µs, "
                  f"{profile['samples']} samples", "", "| op (kernel) | share | µs per step |", "|---|---:|---:|"]
        lines += [f"| {name} | {c['share'] * 100:.1f} % | {c['us']:.0f} |" for name, c in profile["categories"].items()
                  if c["share"] >= 0.005]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    model_path, inputs_dir, *batch_args = sys.argv[1:]
    outcome = profile_models({"model": model_path}, inputs_dir, tuple(int(b) for b in batch_args) or (1, 32))
    print(render(outcome))
