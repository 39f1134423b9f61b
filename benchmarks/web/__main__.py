"""Web benchmark: the signatures of a static-batch model in LiteRT.js (wasm, headless
Chromium) beside the native LiteRT interpreter, in one run.

NAME
    python -m benchmarks.web - load, infer and train latency in the browser vs native

SYNOPSIS
    python -m benchmarks.web [--alpha 1.0] [--image_size 224] [--train_batch 16]
        [--rounds 5] [--runs 20] [--results_dir benchmarks/results] [--quick]

DESCRIPTION
    Compiles the embedded int8 MobileNetV2 with a 4-class softmax head (SGD) twice with static
    shapes: image batch 1 with train batch 1, and image batch 1 with train batch
    --train_batch. Serves runtime/web on 127.0.0.1 cross-origin isolated (COOP/COEP, as
    runtime/web/serve.py serves the demo: threads allowed, a 5 us page clock) and opens both
    models in two headless Chromium pages: one with LiteRT.js's single-threaded wasm, one with
    its multi-threaded wasm at N threads (N = the core count). The same files run natively in
    ai-edge-litert in this process at 1 and N threads (XNNPACK, as in the browser). Times
    `load`, `infer`, `train_images` (batch 1) and `train` (batch 1 and the static batch); in
    each round every case runs on the four runtimes back to back (order rotated per round), in
    long-lived processes; only the signature call and the read of its outputs are timed, on
    inputs built beforehand. Writes <results_dir>/web-benchmark-<UTC>.json and .md: medians
    with min-max, and as ratios (median of the per-round ratios, with their spread): threads
    off/on in the browser and natively, browser/native at 1 and at N threads. Needs node,
    runtime/web/node_modules (npm ci) and /usr/bin/chromium (.ci/install.d/50-web.sh).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.web.measure import Settings, run_benchmark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--train_batch", type=int, default=16, help="the static batch of `train` (besides 1)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the four runtimes")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per signature per round")
    parser.add_argument("--results_dir", default=str(Path(__file__).parents[1] / "results"))
    parser.add_argument("--quick", action="store_true", help="alpha 0.35 96x96, 2 rounds of 3 runs (smoke test)")
    args = parser.parse_args(argv)
    settings = Settings(args.alpha, args.image_size, args.train_batch, args.rounds, args.runs)
    if args.quick:
        settings = Settings(0.35, 96, args.train_batch, rounds=2, runs=3, warmup=1)
    json_path, markdown_path = run_benchmark(settings, args.results_dir)
    print(markdown_path.read_text().split("## Every measurement")[0])
    print(f"wrote {json_path} and {markdown_path}")


if __name__ == "__main__":
    main()
