"""Runtime overheads (python -m benchmarks.runtime): what TransferModel adds over the raw
interpreter. (1) fit per-step time / raw `train` runner per-step time, heads 1280->4 and
1280->100 (Adam), batches 1/8/32, and the same for single `train_bottlenecks` calls (which
save the state around the step to undo a diverging one); (2) the model_digest check at open,
TransferModel.open with and without it (then the structure checks run), on a fused model
file (default: the embedded int8 MobileNetV2 224).

Peers are interleaved A B A B in one long-lived process; figures are medians with the spread
of the per-round ratios. Writes benchmarks/results/runtime-overhead-<time>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _models(classes: tuple[int, ...]) -> dict[int, bytes]:
    from benchmarks.fuzz.subjects import rewrite_model
    from tflite_transfer.compiler.base import mobilenet, sources
    from tflite_transfer.compiler import pipeline

    base_bytes = mobilenet.build_default_mobilenet_v2(alpha=0.35, image_size=96, num_calibration_images=4,
                                                       progress=lambda m: None).tflite
    path = Path("/tmp") / f"runtime-bench-base-{os.getpid()}.tflite"
    path.write_bytes(base_bytes)
    try:
        base = sources.load_base(sources.BaseOptions(base=str(path)), lambda m: None)
        return {count: rewrite_model(pipeline.compile_from_base(
            base, pipeline.HeadOptions(num_classes=count, optimizer="adam", learning_rate=1e-4),
            verify_steps=0, progress=lambda m: None).model_bytes) for count in classes}
    finally:
        path.unlink()


def fit_overhead(model_bytes: bytes, batch: int, rounds: int, steps: int) -> dict:
    from tflite_transfer.runtime import TransferModel

    model = TransferModel.open(model_bytes)
    count = steps * batch
    rng = np.random.default_rng(0)
    bottlenecks = rng.random((count, 1280), np.float32)
    labels = (np.arange(count) % model.num_classes).astype(np.int32)
    model.add_bottlenecks(bottlenecks, labels)
    raw = model._signatures["train"]._runner  # the LiteRT SignatureRunner itself
    batches = [(np.ascontiguousarray(bottlenecks[s:s + batch]), labels[s:s + batch]) for s in range(0, count, batch)]
    fit_times, raw_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        model.fit(epochs=1, batch_size=batch, progress=False)
        fit_times.append((time.perf_counter() - start) / steps)
        start = time.perf_counter()
        for features, classes in batches:
            raw(bottleneck=features, label=classes)
        raw_times.append((time.perf_counter() - start) / steps)
    ratios = [f / r for f, r in zip(fit_times, raw_times)]
    return {"batch": batch, "steps_per_round": steps, "rounds": rounds,
            "fit_step_us": statistics.median(fit_times) * 1e6, "raw_step_us": statistics.median(raw_times) * 1e6,
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def digest_cost(path: str, rounds: int) -> dict:
    from tflite_transfer.runtime import TransferModel, contract

    data = Path(path).read_bytes()
    if contract.find_digest(data) is None:
        from benchmarks.fuzz.subjects import rewrite_model

        stamped = Path("/tmp") / f"runtime-bench-stamped-{os.getpid()}.tflite"
        stamped.write_bytes(rewrite_model(data))
        path, data = str(stamped), stamped.read_bytes()
    from tflite_transfer.runtime import model_structure

    checked, unchecked, digest_only, structure_only = [], [], [], []
    for _ in range(rounds):
        for verify, times in ((True, checked), (False, unchecked)):
            start = time.perf_counter()
            TransferModel.open(path, verify_digest=verify)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        contract.digest_matches(data)
        digest_only.append(time.perf_counter() - start)
        start = time.perf_counter()
        model_structure.check_structure(data, path)  # what verify_digest=False runs instead
        structure_only.append(time.perf_counter() - start)
    return {"model": os.path.basename(path), "bytes": len(data), "rounds": rounds,
            "open_ms_with_digest": statistics.median(checked) * 1e3,
            "open_ms_without_digest": statistics.median(unchecked) * 1e3,
            "digest_check_ms": statistics.median(digest_only) * 1e3,
            "digest_check_ms_min": min(digest_only) * 1e3, "digest_check_ms_max": max(digest_only) * 1e3,
            "structure_check_ms": statistics.median(structure_only) * 1e3}


def single_step_overhead(model_bytes: bytes, batch: int, rounds: int, steps: int) -> dict:
    """train_bottlenecks per call (input checks, the state saved before the step and checked
    after it, so a diverging step is undone) against the raw `train` runner per call."""
    from tflite_transfer.runtime import TransferModel

    model = TransferModel.open(model_bytes)
    rng = np.random.default_rng(1)
    bottlenecks = rng.random((batch, 1280), np.float32) * 0.01
    labels = (np.arange(batch) % model.num_classes).astype(np.int32)
    raw = model._signatures["train"]._runner
    api_times, raw_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_bottlenecks(bottlenecks, labels)
        api_times.append((time.perf_counter() - start) / steps)
        start = time.perf_counter()
        for _ in range(steps):
            raw(bottleneck=bottlenecks, label=labels)
        raw_times.append((time.perf_counter() - start) / steps)
    ratios = [a / r for a, r in zip(api_times, raw_times)]
    return {"batch": batch, "api_step_us": statistics.median(api_times) * 1e6,
            "raw_step_us": statistics.median(raw_times) * 1e6, "ratio_median": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="fused model for the digest cost (default: compile MobileNetV2 224)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if args.model is None:
        from tflite_transfer.compiler.base import sources
        from tflite_transfer.compiler import pipeline

        args.model = f"/tmp/runtime-bench-mnv2-224-{os.getpid()}.tflite"
        result = pipeline.compile_transfer_model(sources.BaseOptions(num_calibration_images=4),
                                                 pipeline.HeadOptions(num_classes=4), verify_steps=0,
                                                 progress=lambda m: None)
        Path(args.model).write_bytes(result.model_bytes)
    report = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
              "cpus": os.cpu_count(), "digest": digest_cost(args.model, args.rounds), "fit": []}
    report["single_step"] = []
    for classes, model_bytes in _models((4, 100)).items():
        for batch in (1, 8, 32):
            row = {"head": f"1280->{classes} adam", **fit_overhead(model_bytes, batch, args.rounds, args.steps)}
            print(row, flush=True)
            report["fit"].append(row)
            row = {"head": f"1280->{classes} adam", **single_step_overhead(model_bytes, batch, args.rounds, args.steps)}
            print(row, flush=True)
            report["single_step"].append(row)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"runtime-overhead-{report['when']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    digest = report["digest"]
    lines = [f"# Runtime overheads ({report['when']}, {report['cpus']} CPUs, shared machine)", "",
             f"Digest check at open of {digest['model']} ({digest['bytes']:,} bytes): "
             f"{digest['digest_check_ms']:.2f} ms (min {digest['digest_check_ms_min']:.2f}, max "
             f"{digest['digest_check_ms_max']:.2f}); open {digest['open_ms_with_digest']:.1f} ms with it, "
             f"{digest['open_ms_without_digest']:.1f} ms without (medians of {digest['rounds']}); without it the "
             f"structure checks run instead (runtime/model_structure.py): {digest['structure_check_ms']:.1f} ms.", "",
             "| head | batch | fit step µs | raw train step µs | fit / raw (median) | spread |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['head']} | {r['batch']} | {r['fit_step_us']:.1f} | {r['raw_step_us']:.1f} | "
              f"{r['ratio_median']:.3f} | {r['ratio_min']:.3f}-{r['ratio_max']:.3f} |" for r in report["fit"]]
    lines += ["", "Single steps: `train_bottlenecks` per call (input checks; `save` before and after the step, "
              "so a step that makes the loss or the state NaN/Inf is undone) against the raw `train` runner.", "",
              "| head | batch | train_bottlenecks µs | raw train µs | ratio (median) |", "|---|---|---|---|---|"]
    lines += [f"| {r['head']} | {r['batch']} | {r['api_step_us']:.1f} | {r['raw_step_us']:.1f} | "
              f"{r['ratio_median']:.2f} |" for r in report["single_step"]]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
