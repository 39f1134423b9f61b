"""Host benchmark: our fused model against the base alone and the peers, in one run.

NAME
    python -m benchmarks.host - per-signature latency, peak memory and file sizes, side by side

SYNOPSIS
    python -m benchmarks.host [--alpha 1.0] [--image_size 224] [--results_dir benchmarks/results]
        [--no-peers] [--quick] [--threads 1,2]

DESCRIPTION
    Compiles the embedded int8 MobileNetV2 with a 4-class softmax head (SGD and Adam), then
    times every signature (load, infer, train at batch 1/8/32, train_images at 1/8, save,
    restore, set_learning_rate, initialize) in child processes that import only numpy and
    ai_edge_litert, at each thread count with XNNPACK on (OpResolverType.AUTO) and off
    (BUILTIN_WITHOUT_DEFAULT_DELEGATES); the base alone and a trivial one-ADD model (the floor)
    are timed in the same processes. Peak RSS (VmHWM) is read from a fresh process per scenario.
    Peers on the same head, batches and bottlenecks, 1 thread: TF's Flex on-device-training
    recipe (TF 2.18.1 venv), TF 2.21 eager and tf.function, ONNX Runtime training 1.19.2 (venv).
    Venvs are created on first use under $TFLITE_TRANSFER_BENCH_CACHE
    (default ~/.cache/tflite_transfer_bench/).
    Writes <results_dir>/host-benchmark-<UTC>.json (every figure), .md (ratios first) and three
    PNG plots; prints the headline ratios. Only the signature call is timed (inputs pre-built);
    each figure is the median of its runs with min-max. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from benchmarks.host import runs
from benchmarks.host.benchmark import run_benchmark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.host", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_classes", type=int, default=4)
    parser.add_argument("--results_dir", default=str(Path(__file__).parents[1] / "results"))
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts for our model")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip the peers (no venvs)")
    parser.add_argument("--quick", action="store_true", help="1 run per figure, fewer configurations (smoke test)")
    args = parser.parse_args(argv)
    settings = runs.Settings.quick() if args.quick else runs.Settings()
    settings = dataclasses.replace(settings, threads=tuple(int(t) for t in args.threads.split(",")))
    run_benchmark(args.results_dir, args.alpha, args.image_size, args.num_classes, settings=settings, peers=args.peers)


if __name__ == "__main__":
    main()
