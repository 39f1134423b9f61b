"""Keras bases whose input is no RGB image: grayscale [28, 28, 1] (an image: synthetic grey
calibration images, pixels 0..255) and [28, 28] (a tensor: calibrated on --calibration_data),
converted to int8, compiled, and trained through the Python runtime."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers import compile_model
from tflite_transfer.runtime import TransferModel, contract


def _grey_classifier(path, input_shape: tuple[int, ...]) -> str:
    """pixels 0..255 -> Rescaling -> conv -> global average pool ('features') -> dense 10."""
    keras.utils.set_random_seed(8)
    pixels = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255.0)(pixels)
    if len(input_shape) == 2:
        x = keras.layers.Reshape((*input_shape, 1))(x)
    x = keras.layers.Conv2D(12, 3, strides=2, activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D(name="features")(x)
    keras.Model(pixels, keras.layers.Dense(10)(features)).save(path)
    return str(path)


def _strokes(count_per_class: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Grey 28x28 noise pictures whose class is their brightness (dark, medium, bright): what a
    random global-pooled conv base can tell apart."""
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(3), count_per_class).astype(np.int32)
    pictures = rng.uniform(0, 70, (len(labels), 28, 28)) + 90.0 * labels[:, None, None]
    return pictures.reshape(len(labels), *shape).astype(np.float32), labels


@pytest.mark.parametrize("shape", [(28, 28, 1), (28, 28)], ids=["28x28x1", "28x28"])
def test_a_grayscale_keras_base_converts_and_trains(tmp_path, shape):
    path = _grey_classifier(tmp_path / "grey.keras", shape)
    interface = {}
    if len(shape) == 2:  # not an image: calibrate on inputs the user gives
        calibration, _ = _strokes(4, shape)
        np.save(tmp_path / "calibration.npy", calibration)
        interface["calibration_data"] = str(tmp_path / "calibration.npy")
    result = compile_model(str(path), "features", verify_steps=3, num_classes=3, optimizer="adam",
                           learning_rate=0.05, interface=interface)
    assert "int8" in result.base.description
    metadata = result.metadata
    if len(shape) == 3:  # an image, fed as it is: nothing version 2 could not say
        assert metadata.contract_version == 2 and metadata.signatures[contract.LOAD].inputs == ("image",)
        assert metadata.input_range == (0.0, 255.0)
    else:
        assert metadata.input == contract.InputSpec("tensor", "float32", (28, 28))
        assert metadata.signatures[contract.LOAD].inputs == ("input",)
    pictures, labels = _strokes(6, shape)
    # int8 features against Keras' float features of the same layer.
    reference = keras.models.load_model(path)
    reference = keras.Model(reference.inputs[0], reference.get_layer("features").output)
    model = TransferModel.open(result.model_bytes)
    features, expected = model.load(pictures), reference(pictures).numpy()
    cosines = (features * expected).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() > 0.95
    model.add_samples(pictures, labels)
    losses = model.fit(epochs=60, batch_size=6, progress=False)
    assert losses[-1] < 0.5 * losses[0], losses
    assert np.mean(model.predict(pictures).argmax(axis=1) == labels) >= 0.9
