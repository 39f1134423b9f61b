"""Tests for compiler/base/from_keras.py: real conversions, run by the real LiteRT interpreter.

References are Keras' own float outputs; small bases (MobileNetV2 alpha 0.35, 96x96) keep the
file fast. Expensive artefacts are built once per module.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.python import schema_py_generated as schema

from tflite_transfer.compiler.base import conversion, from_keras, mobilenet
from tflite_transfer.compiler.errors import InvalidInputError

ALPHA = 0.35
SIZE = 96
FEATURES = 1280
FLOAT_RTOL = 1e-4          # float .tflite vs Keras: same math, different op order
INT8_MIN_COSINE = 0.95     # int8 .tflite vs Keras float, per image


def _quiet(message: str) -> None:
    del message


def _run(tflite: bytes, images: np.ndarray) -> np.ndarray:
    """Runs a base on a batch of any size (the input batch dim is dynamic)."""
    interpreter = Interpreter(model_content=tflite)
    image = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(image["index"], images.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(image["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _cosines(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1)
                                         * np.linalg.norm(expected, axis=1))


def _op_names(tflite: bytes) -> list[list[str]]:
    """Op names per subgraph, read from the flatbuffer independently of the module."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    codes = [names[max(code.builtinCode, code.deprecatedBuiltinCode)]
             for code in model.operatorCodes]
    return [[codes[op.opcodeIndex] for op in subgraph.operators] for subgraph in model.subgraphs]


def _assert_single_builtin_subgraph(tflite: bytes) -> list[str]:
    subgraphs = _op_names(tflite)
    assert len(subgraphs) == 1
    ops = subgraphs[0]
    assert not set(ops) & {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE",
                           "CUSTOM"}, ops
    return ops


def _set_batch_norm_statistics(model) -> None:
    """Batch statistics as moving statistics, so a weights=None model has non-trivial output."""
    batch_norms = [layer for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model([conversion.synthetic_images(8, SIZE, SIZE, seed=7)], training=True)
    for layer in batch_norms:
        layer.momentum = 0.99


def _write_png(path, pixels: np.ndarray) -> None:
    tf.io.write_file(str(path), tf.io.encode_png(pixels.astype(np.uint8)))


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return conversion.synthetic_images(4, SIZE, SIZE, seed=123)


@pytest.fixture(scope="module")
def default_keras():
    return mobilenet.mobilenet_v2_keras_model(ALPHA, SIZE, progress=_quiet)


@pytest.fixture(scope="module")
def default_float() -> conversion.ConvertedBase:
    return mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, quantize=False, progress=_quiet)


@pytest.fixture(scope="module")
def default_int8_and_messages():
    messages = []
    base = mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, num_calibration_images=8,
                                                 progress=messages.append)
    return base, messages


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """A 5-class MobileNetV2 classifier taking pixels [0, 255], saved as .keras."""
    image = keras.Input((SIZE, SIZE, 3), name="pixels")
    rescaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(image)
    classifier = keras.applications.MobileNetV2(weights=None, include_top=True, classes=5,
                                                alpha=ALPHA, input_tensor=rescaled)
    _set_batch_norm_statistics(classifier)
    path = tmp_path_factory.mktemp("classifier") / "classifier.keras"
    classifier.save(path)
    pooling = next(layer.name for layer in classifier.layers
                   if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    return str(path), classifier, pooling


@pytest.fixture(scope="module")
def png_dir(tmp_path_factory):
    """Four PNGs of different sizes (one grey) plus files that must be skipped."""
    directory = tmp_path_factory.mktemp("calibration")
    rng = np.random.default_rng(5)
    for index, (height, width, channels) in enumerate([(40, 50, 3), (120, 100, 3),
                                                        (96, 96, 1), (64, 200, 3)]):
        _write_png(directory / f"image_{index}.png",
                   rng.integers(0, 256, (height, width, channels)))
    (directory / "broken.png").write_bytes(b"not a png at all")
    (directory / "notes.txt").write_text("ignored")
    return str(directory)


# --------------------------------------------------------------------------- default base

def test_default_float_matches_keras(default_float, default_keras, images):
    expected = default_keras(images, training=False).numpy()
    actual = _run(default_float.tflite, images)
    assert actual.shape == (4, FEATURES)
    assert expected.std() > 0.05  # realistic BN statistics: the features are not collapsed
    np.testing.assert_allclose(actual, expected, rtol=FLOAT_RTOL, atol=FLOAT_RTOL)
    assert not default_float.quantized
    assert "float32" in default_float.description


def test_default_int8_is_close_to_keras_float(default_int8_and_messages, default_keras, images):
    base, _ = default_int8_and_messages
    expected = default_keras(images, training=False).numpy()
    actual = _run(base.tflite, images)
    assert actual.dtype == np.float32 and actual.shape == (4, FEATURES)
    assert actual.std() > 0.05
    assert _cosines(actual, expected).min() > INT8_MIN_COSINE


def test_default_int8_structure(default_int8_and_messages, default_float):
    base, _ = default_int8_and_messages
    ops = _assert_single_builtin_subgraph(base.tflite)
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert "CONV_2D" in ops
    _assert_single_builtin_subgraph(default_float.tflite)
    interpreter = Interpreter(model_content=base.tflite)
    image, = interpreter.get_input_details()
    bottleneck, = interpreter.get_output_details()
    assert list(image["shape_signature"]) == [-1, SIZE, SIZE, 3]
    assert image["dtype"] == np.float32 and bottleneck["dtype"] == np.float32
    assert list(bottleneck["shape_signature"]) == [-1, FEATURES]


def test_dynamic_batch_gives_the_same_rows(default_int8_and_messages, images):
    base, _ = default_int8_and_messages
    batch = _run(base.tflite, images[:3])
    single = np.concatenate([_run(base.tflite, images[i:i + 1]) for i in range(3)])
    assert batch.shape == (3, FEATURES)
    np.testing.assert_allclose(batch, single, atol=1e-6)


def test_synthetic_flag_description_and_progress(default_int8_and_messages):
    base, messages = default_int8_and_messages
    assert base.synthetic_weights and base.quantized
    assert base.description.startswith(
        f"Keras MobileNetV2 alpha={ALPHA} {SIZE}x{SIZE}, int8 (synthetic weights)")
    text = "\n".join(messages)
    assert "SYNTHETIC weights" in text
    assert "WARNING" in text and "SYNTHETIC images" in text
    assert "calibrating 8/8" in text


def test_synthetic_weights_are_deterministic(default_keras):
    again = mobilenet.mobilenet_v2_keras_model(ALPHA, SIZE, progress=_quiet)
    for mine, theirs in zip(default_keras.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_calibration_dir_is_used(png_dir, default_keras, images):
    messages = []
    base = mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, calibration_dir=png_dir,
                                                 progress=messages.append)
    assert f"4 images from {png_dir}" in base.description
    assert not any("SYNTHETIC images" in message for message in messages)
    expected = default_keras(images, training=False).numpy()
    assert _cosines(_run(base.tflite, images), expected).min() > INT8_MIN_COSINE


# --------------------------------------------------------------------------- weights files

def test_weights_file_from_a_classifier(classifier_file, images):
    path, classifier, pooling = classifier_file
    base = mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, weights_file=path,
                                                 quantize=False, progress=_quiet)
    expected = keras.Model(classifier.inputs[0], classifier.get_layer(pooling).output)(images)
    assert not base.synthetic_weights
    assert "weights from classifier.keras" in base.description
    np.testing.assert_allclose(_run(base.tflite, images), expected.numpy(),
                               rtol=FLOAT_RTOL, atol=FLOAT_RTOL)


@pytest.mark.parametrize("saved_from", ["backbone", "whole model"])
def test_weights_file_saved_with_save_weights(tmp_path, default_keras, images, saved_from):
    source = mobilenet.mobilenet_v2_keras_model(ALPHA, SIZE, progress=_quiet)
    backbone = source.layers[-1]
    backbone.set_weights([weight * 0.9 for weight in backbone.get_weights()])
    path = str(tmp_path / "mobilenet.weights.h5")
    (backbone if saved_from == "backbone" else source).save_weights(path)
    base = mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, weights_file=path,
                                                 quantize=False, progress=_quiet)
    expected = source(images, training=False).numpy()
    assert np.abs(expected - default_keras(images, training=False).numpy()).max() > 1e-3
    np.testing.assert_allclose(_run(base.tflite, images), expected,
                               rtol=FLOAT_RTOL, atol=FLOAT_RTOL)


def test_weights_file_of_another_alpha_is_refused(tmp_path):
    other = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.5,
                                           input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "alpha05.keras"
    other.save(path)
    with pytest.raises(InvalidInputError, match="alpha05.keras.*no MobileNetV2 backbone"):
        mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, weights_file=str(path),
                                              progress=_quiet)
    other_weights = str(tmp_path / "alpha05.weights.h5")
    other.save_weights(other_weights)
    with pytest.raises(InvalidInputError, match="alpha05.weights.h5.*does not fit"):
        mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, weights_file=other_weights,
                                              progress=_quiet)
    with pytest.raises(InvalidInputError, match="missing.keras.*does not exist"):
        mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, progress=_quiet,
                                              weights_file=str(tmp_path / "missing.keras"))


# --------------------------------------------------------------------------- Keras files

def test_keras_file_cut_at_pooling_layer(classifier_file, images):
    path, classifier, pooling = classifier_file
    base = from_keras.convert_keras_base(path, output_layer=pooling, quantize=False,
                                         progress=_quiet)
    expected = keras.Model(classifier.inputs[0], classifier.get_layer(pooling).output)(images)
    assert not base.synthetic_weights and not base.quantized
    assert f"cut at '{pooling}'" in base.description
    np.testing.assert_allclose(_run(base.tflite, images), expected.numpy(),
                               rtol=FLOAT_RTOL, atol=FLOAT_RTOL)
    _assert_single_builtin_subgraph(base.tflite)


def test_keras_file_bad_layers(classifier_file):
    path, _, _ = classifier_file
    with pytest.raises(InvalidInputError, match="no layer named 'nope'.*predictions"):
        from_keras.convert_keras_base(path, output_layer="nope", progress=_quiet)


def test_keras_file_cut_at_a_spatial_map_keeps_the_map(classifier_file, images):
    """The map [b, 3, 3, 1280] passes through conversion; cut.py adapts it (--bottleneck_adapter)."""
    path, classifier, _ = classifier_file
    base = from_keras.convert_keras_base(path, output_layer="out_relu", quantize=False, progress=_quiet)
    expected = keras.Model(classifier.inputs[0], classifier.get_layer("out_relu").output)(images)
    assert expected.shape[1:] == (3, 3, FEATURES)
    # Unpooled, float op-order differences show up to ~2e-5 of the map's largest value.
    np.testing.assert_allclose(_run(base.tflite, images), expected.numpy(), rtol=FLOAT_RTOL,
                               atol=FLOAT_RTOL * float(np.abs(expected).max()))


def test_keras_file_with_1x1_output_is_flattened(tmp_path, png_dir):
    image = keras.Input((32, 40, 3))
    features = keras.layers.Conv2D(6, 3, activation="relu")(image)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(features)
    model = keras.Model(image, pooled)
    path = tmp_path / "tiny.h5"
    model.save(path)
    pixels = conversion.synthetic_images(3, 32, 40, seed=9)
    expected = model(pixels).numpy().reshape(3, 6)
    float_base = from_keras.convert_keras_base(str(path), quantize=False, progress=_quiet)
    np.testing.assert_allclose(_run(float_base.tflite, pixels), expected, rtol=FLOAT_RTOL,
                               atol=FLOAT_RTOL)
    int8_base = from_keras.convert_keras_base(str(path), calibration_dir=png_dir,
                                              progress=_quiet)
    assert int8_base.quantized
    assert _cosines(_run(int8_base.tflite, pixels), expected).min() > INT8_MIN_COSINE


@pytest.mark.parametrize("make_bad, message", [
    (lambda d: d / "missing.keras", "missing.keras.*does not exist"),
    (lambda d: d, "is a directory.*convert_saved_model_base"),
    (lambda d: _touch(d / "model.txt", b"x"), "model.txt.*not a Keras model file"),
    (lambda d: _touch(d / "corrupt.keras", b"garbage"), "cannot load Keras model.*corrupt"),
])
def test_keras_file_bad_paths(tmp_path, make_bad, message):
    with pytest.raises(InvalidInputError, match=message):
        from_keras.convert_keras_base(str(make_bad(tmp_path)), progress=_quiet)


def test_keras_file_with_a_non_image_input(tmp_path):
    """Any float input converts; int8 calibration then needs inputs or a range to draw them from."""
    vector = keras.Input((7,), name="vector")
    path = tmp_path / "dense.keras"
    model = keras.Model(vector, keras.layers.Dense(2)(vector))
    model.save(path)
    rows = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    base = from_keras.convert_keras_base(str(path), quantize=False, progress=_quiet)
    assert base.input_range is None  # not an image: no pixel range is assumed
    np.testing.assert_allclose(_run(base.tflite, rows), model(rows).numpy(), rtol=FLOAT_RTOL, atol=FLOAT_RTOL)
    with pytest.raises(InvalidInputError, match=r"^the base's input \[7\] is not an image: to calibrate int8 give "
                                                r"--calibration_data=FILE.npy .* or --base_input_range=LO,HI"):
        from_keras.convert_keras_base(str(path), progress=_quiet)
    with pytest.raises(InvalidInputError, match=r"^--calibration_dir holds images, but the base's input \[7\]"):
        from_keras.convert_keras_base(str(path), calibration_dir=str(tmp_path), progress=_quiet)
    int8 = from_keras.convert_keras_base(str(path), progress=_quiet,
                                         calibration=conversion.Calibration(input_range=(-3.0, 3.0)))
    assert int8.quantized and int8.input_range == (-3.0, 3.0)
    assert _cosines(_run(int8.tflite, rows), model(rows).numpy()).min() > INT8_MIN_COSINE


def _touch(path, content: bytes):
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- SavedModels

def test_saved_model_round_trip(tmp_path, default_keras, images):
    path = str(tmp_path / "exported")
    default_keras.export(path, verbose=False)
    base = from_keras.convert_saved_model_base(path, quantize=False, progress=_quiet)
    np.testing.assert_allclose(_run(base.tflite, images[:3]),
                               default_keras(images[:3], training=False).numpy(),
                               rtol=FLOAT_RTOL, atol=FLOAT_RTOL)
    assert base.description.startswith("SavedModel exported 96x96 -> 1280, float32")
    _assert_single_builtin_subgraph(base.tflite)


def _save_module(path, input_signature, function) -> str:
    module = tf.Module()
    module.serve = tf.function(function, input_signature=input_signature)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


@pytest.mark.parametrize("signature, function, message", [
    ([tf.TensorSpec([1, 8, 8, 3], tf.float32, name="image")],
     lambda image: {"out": tf.reduce_mean(image, [1, 2])}, r"fixed batch"),
    ([tf.TensorSpec([None, 8, 8, 3], tf.float32, name="a"),
      tf.TensorSpec([None, 8, 8, 3], tf.float32, name="b")],
     lambda a, b: {"out": tf.reduce_mean(a + b, [1, 2])}, r"one input to one output"),
    ([tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")],
     lambda image: {"out": tf.reshape(image, [-1, 8, 8, 3, 1])}, r"output 'out' is float32 "
                                                                 r"\[None, 8, 8, 3, 1\]"),
    ([tf.TensorSpec([None, 8, 8, 3], tf.int32, name="image")],
     lambda image: {"out": tf.reduce_mean(image, [1, 2])}, r"input 'image' is int32"),
])
def test_saved_model_bad_signatures(tmp_path, signature, function, message):
    path = _save_module(tmp_path / "module", signature, function)
    with pytest.raises(InvalidInputError, match=message):
        from_keras.convert_saved_model_base(path, progress=_quiet)


def test_saved_model_bad_paths(tmp_path):
    with pytest.raises(InvalidInputError, match="nowhere.*does not exist"):
        from_keras.convert_saved_model_base(str(tmp_path / "nowhere"), progress=_quiet)
    with pytest.raises(InvalidInputError, match="cannot load SavedModel"):
        from_keras.convert_saved_model_base(str(tmp_path), progress=_quiet)


# --------------------------------------------------------------------------- calibration images

def test_load_calibration_images(png_dir):
    loaded = conversion.load_calibration_images(png_dir, 30, 20, limit=10)
    assert loaded.shape == (4, 30, 20, 3) and loaded.dtype == np.float32
    assert loaded.min() >= 0 and loaded.max() <= 255 and loaded.max() > 100
    assert conversion.load_calibration_images(png_dir, 30, 20, limit=2).shape[0] == 2


def test_load_calibration_images_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="missing.*not found"):
        conversion.load_calibration_images(str(tmp_path / "missing"), 8, 8, 4)
    with pytest.raises(InvalidInputError, match="holds no .jpg/.jpeg/.png/.bmp files"):
        conversion.load_calibration_images(str(tmp_path), 8, 8, 4)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(InvalidInputError, match="none of the 1 image files.*could be decoded"):
        conversion.load_calibration_images(str(tmp_path), 8, 8, 4)
    with pytest.raises(InvalidInputError, match="count must be >= 1"):
        conversion.load_calibration_images(str(tmp_path), 8, 8, 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="empty.*holds no"):
        mobilenet.build_default_mobilenet_v2(ALPHA, SIZE, calibration_dir=str(empty),
                                              progress=_quiet)
