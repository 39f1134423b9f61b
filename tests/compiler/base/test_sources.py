"""Keras-file and SavedModel bases through the whole pipeline (conversion, cut, fuse, checks)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import compile_model, interpreter
from tflite_transfer.compiler.errors import InvalidInputError


@pytest.fixture(scope="module")
def keras_classifier(tmp_path_factory):
    keras.utils.set_random_seed(2)
    image = keras.Input((20, 18, 3))
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.Conv2D(6, 3, activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D(name="features")(x)
    model = keras.Model(image, keras.layers.Dense(5, activation="softmax", name="scores")(features))
    path = tmp_path_factory.mktemp("keras") / "classifier.keras"
    model.save(path)
    return str(path), model


def test_keras_file_cut_at_a_layer(keras_classifier):
    path, model = keras_classifier
    result = compile_model(path, "features", num_classes=3, verify_steps=3)
    assert result.base.cut_at is None and result.metadata.bottleneck_size == 6  # cut in Keras
    images = np.random.default_rng(0).random((4, 20, 18, 3), dtype=np.float32) * 255
    fused = interpreter(result.model_bytes)
    bottleneck = fused.get_signature_runner("load")(image=images)["bottleneck"]
    expected = keras.Model(model.input, model.get_layer("features").output)(images).numpy()
    cosine = np.sum(bottleneck * expected) / (np.linalg.norm(bottleneck) * np.linalg.norm(expected))
    assert cosine > 0.99  # int8 base against Keras' float features
    assert fused.get_signature_runner("infer")(image=images)["probabilities"].shape == (4, 3)


def test_saved_model_directory(keras_classifier, tmp_path):
    _, model = keras_classifier
    features = keras.Model(model.input, model.get_layer("features").output)
    module = tf.Module()
    module.features = features
    module.serve = tf.function(lambda image: {"features": features(image)},
                               input_signature=[tf.TensorSpec([None, 20, 18, 3], tf.float32, name="image")])
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures={"serving_default": module.serve})
    result = compile_model(str(tmp_path / "saved"), num_classes=4, verify_steps=3)
    images = np.random.default_rng(1).random((2, 20, 18, 3), dtype=np.float32) * 255
    bottleneck = interpreter(result.model_bytes).get_signature_runner("load")(image=images)["bottleneck"]
    expected = features(images).numpy()
    assert np.sum(bottleneck * expected) / (np.linalg.norm(bottleneck) * np.linalg.norm(expected)) > 0.99


def test_directory_without_saved_model(tmp_path):
    with pytest.raises(InvalidInputError, match="must be a SavedModel"):
        compile_model(str(tmp_path))
