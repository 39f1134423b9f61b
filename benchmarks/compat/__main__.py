"""Compatibility matrix: does a compiled model run its whole contract on older stock runtimes?

NAME
    python -m benchmarks.compat - run the signature contract in one venv per TFLite runtime

SYNOPSIS
    python -m benchmarks.compat [--results_dir benchmarks/results] [--runtimes litert-1.0.1,tf-2.12.1]
        [--setup_only] [--all_patches]

DESCRIPTION
    Creates (once, cached under $TFLITE_TRANSFER_BENCH_CACHE/compat, default
    ~/.cache/tflite_transfer_bench/compat/) one virtual environment per runtime: every ai-edge-litert
    minor release from 1.0 to the newest (1.0.x with numpy<2), tflite-runtime 2.14 (numpy<2),
    and `tf.lite` in tensorflow-cpu 2.12 ... 2.21. Compiles the test models here (TF 2.21), in
    several variants: as compiled, with compiler.op_versions.lower_op_versions applied, and a
    synthetic "inflated" copy whose op codes are raised to the newest version TFLite's
    runtime-version table gives TF 2.14 for each op (what a newer converter or tool may stamp),
    with and without lowering. Then, in each venv, benchmarks/compat/probe.py (numpy + that runtime only)
    runs load, infer, train (the loss must fall), train_images, save/restore (bit-exact round
    trip and replay), set_learning_rate and initialize on every model.
    Writes <results_dir>/compat.md (runtime, version, model, result, error line) and
    compat.json (every probe's full result). Asserts nothing; a runtime that cannot be
    installed is reported as such.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from benchmarks.common.venvs import cache_dir, ensure_venv
from benchmarks.compat.matrix import run_probe, write_results
from benchmarks.compat.models import build_models
from benchmarks.compat.runtimes import runtimes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compat", description=__doc__.split("\n\n")[1])
    parser.add_argument("--results_dir", default=str(Path(__file__).parents[1] / "results"))
    parser.add_argument("--workdir", default=str(cache_dir() / "compat" / "models"))
    parser.add_argument("--runtimes", default="", help="comma-separated venv names (default: all)")
    parser.add_argument("--all_patches", action="store_true", help="every ai-edge-litert release")
    parser.add_argument("--setup_only", action="store_true", help="create the venvs and stop")
    args = parser.parse_args(argv)
    selected = runtimes(args.all_patches)
    if args.runtimes:
        wanted = set(args.runtimes.split(","))
        selected = [r for r in selected if r.name in wanted]
    if args.setup_only:
        for runtime in selected:
            ready = ensure_venv(runtime.venv)
            print(runtime.name, ready.python, f"{ready.setup_seconds:.0f} s", ready.error or "", flush=True)
        return
    models = build_models(Path(args.workdir))
    rows = []
    for runtime in selected:
        ready = ensure_venv(runtime.venv)
        found = run_probe(runtime, ready, models)
        rows += found
        print(f"{runtime.name}: " + ", ".join(f"{r['model']}: {r['result']}" for r in found), flush=True)
    facts = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} Linux, "
             f"Python {platform.python_version()}", "python": sys.version.split()[0]}
    path = write_results(rows, models, Path(args.results_dir), facts)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
