"""Base sources → base `.tflite`: a Keras model, a SavedModel, or the embedded MobileNetV2.

Every source ends as one function `image -> bottleneck` (float32 pixels in [0, 255],
[batch, height, width, 3] with a dynamic batch → float32 [batch, features]), frozen to
constants and converted to a one-subgraph, builtin-only `.tflite`, full-int8 by default with
float32 input and output. The fusion step consumes that flatbuffer.

Freezing comes first because Keras 3 weights converted as resource variables silently stay
uninitialised (NaN output, no error; tensorflow/tensorflow#98964): constants cannot be lost.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tflite_transfer.compiler import model_io
from tflite_transfer.compiler.errors import InvalidInputError, VerificationError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
KERAS_EXTENSIONS = (".keras", ".h5")
SYNTHETIC_SEED = 20190601
# Ops that would mean weights survived as variables (the Keras 3 pitfall) or need Flex.
FORBIDDEN_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")  # and any non-builtin

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class ConvertedBase:
    tflite: bytes              # flatbuffer: ONE subgraph, input = image, output = bottleneck
    description: str           # human summary, e.g. "Keras MobileNetV2 alpha=1.0 224x224, int8 (synthetic weights)"
    synthetic_weights: bool    # True when no real weights were loaded
    quantized: bool            # True when full-integer int8 quantized


@dataclasses.dataclass(frozen=True)
class _ImageFunction:
    """A frozen `image -> bottleneck` graph and the image size it takes."""
    frozen: tf.types.experimental.ConcreteFunction
    height: int
    width: int
    features: int


def build_default_mobilenet_v2(alpha: float = 1.0, image_size: int = 224,
                               weights_file: str | None = None,
                               calibration_dir: str | None = None,
                               num_calibration_images: int = 32,
                               progress: Progress = print,
                               quantize: bool = True) -> ConvertedBase:
    """The embedded default base: Rescaling + Keras MobileNetV2 (pooled), int8 unless told."""
    model = mobilenet_v2_keras_model(alpha, image_size, weights_file, progress)
    image_function = _freeze_keras(model, None, f"MobileNetV2 alpha={alpha}")
    weights = ("synthetic weights" if weights_file is None
               else f"weights from {os.path.basename(weights_file)}")
    description = (f"Keras MobileNetV2 alpha={alpha} {image_size}x{image_size}, "
                   f"{_precision(quantize)} ({weights})")
    return _convert(image_function, description, weights_file is None, quantize,
                    calibration_dir, num_calibration_images, progress)


def convert_keras_base(path: str, output_layer: str | None = None, quantize: bool = True,
                       calibration_dir: str | None = None, num_calibration_images: int = 32,
                       progress: Progress = print) -> ConvertedBase:
    """A `.keras` / `.h5` model file, optionally cut at `output_layer`, as a base."""
    model = _load_keras_model(path)
    image_function = _freeze_keras(model, output_layer, path)
    cut = f" cut at '{output_layer}'" if output_layer else ""
    description = (f"Keras model {os.path.basename(path)}{cut} "
                   f"{_shapes(image_function)}, {_precision(quantize)}")
    return _convert(image_function, description, False, quantize, calibration_dir,
                    num_calibration_images, progress)


def convert_saved_model_base(path: str, quantize: bool = True, calibration_dir: str | None = None,
                             num_calibration_images: int = 32,
                             progress: Progress = print) -> ConvertedBase:
    """A SavedModel directory whose `serving_default` maps one image to one feature tensor."""
    image_function = _freeze_saved_model(path)
    description = (f"SavedModel {os.path.basename(os.path.normpath(path))} "
                   f"{_shapes(image_function)}, {_precision(quantize)}")
    return _convert(image_function, description, False, quantize, calibration_dir,
                    num_calibration_images, progress)


def load_calibration_images(directory: str, height: int, width: int, limit: int) -> np.ndarray:
    """Up to `limit` jpg/png/bmp images from `directory` (sorted by name), resized, as
    float32 [n, height, width, 3] pixels in [0, 255]. Unreadable files are skipped."""
    if limit < 1:
        raise InvalidInputError(f"calibration image count must be >= 1, got {limit}")
    if not os.path.isdir(directory):
        raise InvalidInputError(f"calibration directory {directory!r} does not exist or is "
                                "not a directory; pass a folder of .jpg/.png/.bmp images")
    names = sorted(name for name in os.listdir(directory)
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise InvalidInputError(f"calibration directory {directory!r} holds no "
                                f"{'/'.join(IMAGE_EXTENSIONS)} files")
    images = []
    for name in names:
        image = _read_image(os.path.join(directory, name), height, width)
        if image is not None:
            images.append(image)
        if len(images) == limit:
            break
    if not images:
        raise InvalidInputError(f"none of the {len(names)} image files in calibration directory "
                                f"{directory!r} could be decoded; use valid jpg/png/bmp files")
    return np.stack(images).astype(np.float32)


def mobilenet_v2_keras_model(alpha: float = 1.0, image_size: int = 224,
                             weights_file: str | None = None, progress: Progress = print):
    """The default base as a Keras model: pixels [0, 255] → Rescaling → MobileNetV2 (avg pool).

    Without `weights_file` the weights are synthetic but deterministic, with batch-norm
    statistics measured on synthetic images (see `_set_synthetic_weights`).
    """
    if image_size < 32:
        raise InvalidInputError(f"MobileNetV2 needs an image size >= 32, got {image_size}")
    if alpha <= 0:
        raise InvalidInputError(f"MobileNetV2 alpha must be > 0, got {alpha}")
    image = keras.Input((image_size, image_size, 3), name="image")
    backbone = keras.applications.MobileNetV2(
        weights=None, include_top=False, pooling="avg", alpha=alpha,
        input_shape=(image_size, image_size, 3))
    model = keras.Model(image, backbone(keras.layers.Rescaling(1 / 127.5, offset=-1)(image)))
    if weights_file is None:
        progress(f"MobileNetV2 alpha={alpha}: no weights file given, using SYNTHETIC weights "
                 "(features carry no real image knowledge)")
        _set_synthetic_weights(model, backbone, image_size)
    else:
        _load_backbone_weights(model, backbone, weights_file)
    return model


def synthetic_images(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random images (8x8 noise upsampled), float32 [count, h, w, 3] in [0, 255]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(count, 8, 8, 3)).astype(np.float32)
    images = tf.image.resize(coarse, (height, width), method="bilinear").numpy()
    return np.clip(images, 0, 255).astype(np.float32)


def _set_synthetic_weights(model, backbone, image_size: int) -> None:
    """Seeded Glorot kernels and batch-norm statistics measured on synthetic images.

    Keras leaves BN mean/var at 0/1, which makes int8 calibration collapse (output scale
    ~1e-8, all zeros). With momentum 0, one training-mode call sets every moving mean/var
    to its batch statistics, layer by layer, consistently with the layers before it.
    """
    rng = np.random.default_rng(SYNTHETIC_SEED)
    batch_norms = [layer for layer in backbone.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in backbone.layers:
        for weight in layer.weights:
            if len(weight.shape) == 4:
                weight.assign(_glorot_uniform(rng, tuple(weight.shape)))
    for layer in batch_norms:
        # A random BN network is chaotic (float output moves by cos 0.8 for +-1 pixel noise,
        # so int8 rounding destroys it). Beta = 1 before each ReLU6 keeps most units in the
        # linear range; measured int8 vs float cosine 0.90 -> 0.998 at alpha 0.35, 96x96.
        if not layer.name.endswith("project_BN"):
            layer.beta.assign(np.ones(layer.beta.shape, np.float32))
    momenta = [layer.momentum for layer in batch_norms]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(synthetic_images(16, image_size, image_size, SYNTHETIC_SEED), training=True)
    for layer, momentum in zip(batch_norms, momenta):
        layer.momentum = momentum


def _glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    receptive_field = int(np.prod(shape[:-2]))
    fan_in, fan_out = shape[-2] * receptive_field, shape[-1] * receptive_field
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _load_backbone_weights(model, backbone, weights_file: str) -> None:
    """Loads a MobileNetV2 backbone's weights from a `.weights.h5`, `.keras` or `.h5` file.

    Full-model files are searched (the model and its nested models) for one whose first
    weights have exactly the backbone's shapes, so a classifier built on MobileNetV2 works.
    """
    if not os.path.isfile(weights_file):
        raise InvalidInputError(f"weights file {weights_file!r} does not exist")
    if weights_file.endswith(".weights.h5"):
        _load_weights_h5(model, backbone, weights_file)
        return
    try:
        source = keras.models.load_model(weights_file, compile=False)
    except Exception as error:
        raise InvalidInputError(f"weights file {weights_file!r} is not a loadable Keras "
                                f".keras/.h5 model: {_first_line(error)}") from error
    wanted = [tuple(weight.shape) for weight in backbone.weights]
    for candidate in _models_within(source):
        values = candidate.get_weights()[:len(wanted)]
        if [value.shape for value in values] == wanted:
            backbone.set_weights(values)
            return
    raise InvalidInputError(
        f"weights file {weights_file!r} holds no MobileNetV2 backbone matching "
        f"'{backbone.name}' ({len(wanted)} tensors, first {wanted[0]}); check its alpha")


def _load_weights_h5(model, backbone, weights_file: str) -> None:
    """A `.weights.h5` saved from the backbone alone or from the whole default model."""
    failure = None
    for target in (backbone, model):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                target.load_weights(weights_file)
        except Exception as error:  # Keras raises ValueError, KeyError, OSError...
            failure = _first_line(error)
            continue
        # Keras 3 only warns when parts of the file do not match ("Skipping ... will retain
        # their freshly-initialized weights"): a half-loaded backbone must not pass as loaded.
        skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
        if not skipped:
            return
        failure = skipped[0].splitlines()[0][:200]
    raise InvalidInputError(
        f"weights file {weights_file!r} does not fit MobileNetV2 '{backbone.name}': "
        f"{failure}; save it with save_weights from a MobileNetV2 of the same alpha")


def _models_within(model) -> Iterator:
    """The model itself, then every nested model, depth first."""
    yield model
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):
            yield from _models_within(layer)


def _load_keras_model(path: str):
    if os.path.isdir(path):
        raise InvalidInputError(f"{path!r} is a directory; for a SavedModel use "
                                "convert_saved_model_base, for Keras pass a .keras or .h5 file")
    if not os.path.isfile(path):
        raise InvalidInputError(f"Keras model file {path!r} does not exist")
    if not path.endswith(KERAS_EXTENSIONS) or path.endswith(".weights.h5"):
        raise InvalidInputError(f"{path!r} is not a Keras model file: expected a .keras or "
                                ".h5 file saved with model.save()")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # corrupt zip/HDF5, unknown custom layer, ...
        raise InvalidInputError(f"cannot load Keras model {path!r}: {_first_line(error)}; "
                                "is it a complete model saved with model.save()?") from error


def _freeze_keras(model, output_layer: str | None, source: str) -> _ImageFunction:
    """Cuts `model` at `output_layer` (if given) and freezes it as an image function."""
    if len(model.inputs) != 1:
        raise InvalidInputError(f"{source}: the base must have one image input, found "
                                f"{len(model.inputs)} ({[t.name for t in model.inputs]})")
    image = model.inputs[0]
    height, width = _check_image_input(source, image.name, tuple(image.shape), image.dtype)
    if output_layer is None:
        if len(model.outputs) != 1:
            raise InvalidInputError(f"{source}: the model has {len(model.outputs)} outputs; "
                                    "pick one with output_layer")
        bottleneck, where = model.outputs[0], "the model output"
    else:
        bottleneck, where = _layer_output(model, output_layer, source), f"layer '{output_layer}'"
    flatten = _bottleneck_flattener(source, where, tuple(bottleneck.shape), bottleneck.dtype)
    cut = keras.Model(image, bottleneck)
    features = int(np.prod(bottleneck.shape[1:]))
    return _ImageFunction(
        _freeze(lambda pixels: flatten(cut(pixels, training=False)), height, width),
        height, width, features)


def _layer_output(model, name: str, source: str):
    names = [layer.name for layer in model.layers]
    if name not in names:
        shown = ", ".join(names[-12:])
        raise InvalidInputError(f"{source}: no layer named '{name}'; the last layers are: "
                                f"{shown}")
    try:
        return model.get_layer(name).output
    except (AttributeError, ValueError) as error:  # shared layer: several outputs
        raise InvalidInputError(f"{source}: layer '{name}' has no single output "
                                f"({_first_line(error)}); pick another layer") from error


def _freeze_saved_model(path: str) -> _ImageFunction:
    if not os.path.isdir(path):
        raise InvalidInputError(f"SavedModel directory {path!r} does not exist")
    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:  # missing saved_model.pb, corrupt proto, ...
        raise InvalidInputError(f"cannot load SavedModel {path!r}: {_first_line(error)}") \
            from error
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise InvalidInputError(f"SavedModel {path!r} has no 'serving_default' signature "
                                f"(found: {sorted(loaded.signatures)}); re-export with one")
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidInputError(f"SavedModel {path!r}: serving_default must map one image to "
                                f"one output, found inputs {sorted(inputs)} and outputs "
                                f"{sorted(outputs)}")
    (input_name, input_spec), = inputs.items()
    (output_name, output_spec), = outputs.items()
    if input_spec.shape.rank and input_spec.shape[0] is not None:
        raise InvalidInputError(f"SavedModel {path!r}: input '{input_name}' has a fixed batch "
                                f"{input_spec.shape}; re-export with batch None")
    height, width = _check_image_input(path, input_name, tuple(input_spec.shape),
                                       input_spec.dtype)
    flatten = _bottleneck_flattener(path, f"output '{output_name}'",
                                    tuple(output_spec.shape), output_spec.dtype)
    features = int(np.prod(output_spec.shape[1:]))
    return _ImageFunction(
        _freeze(lambda pixels: flatten(signature(**{input_name: pixels})[output_name]),
                height, width),
        height, width, features)


def _check_image_input(source: str, name: str, shape: tuple, dtype) -> tuple[int, int]:
    """Height and width of an image input [batch, h, w, 3] float; a clear error otherwise."""
    dtype = tf.as_dtype(dtype)
    if len(shape) != 4 or shape[3] != 3 or None in shape[1:3] or not dtype.is_floating:
        raise InvalidInputError(
            f"{source}: input '{name}' is {dtype.name} {list(shape)}; a base needs one float "
            "image input [batch, height, width, 3] with a fixed height and width")
    return int(shape[1]), int(shape[2])


def _bottleneck_flattener(source: str, where: str, shape: tuple, dtype) -> Callable:
    """A function giving the bottleneck as [batch, features]; rank 4 only when 1x1."""
    dtype = tf.as_dtype(dtype)
    flat = len(shape) == 2 or (len(shape) == 4 and tuple(shape[1:3]) == (1, 1))
    if not flat or None in shape[1:] or not dtype.is_floating:
        raise InvalidInputError(
            f"{source}: {where} is {dtype.name} {list(shape)}; the bottleneck must be float "
            "[batch, features] or [batch, 1, 1, features]: cut at a pooling layer")
    if len(shape) == 2:
        return lambda bottleneck: bottleneck
    return lambda bottleneck: tf.reshape(bottleneck, [-1, int(shape[3])])


def _freeze(image_to_bottleneck: Callable, height: int, width: int):
    """Traces with a dynamic batch and turns every variable into a constant."""
    spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="image")
    function = tf.function(image_to_bottleneck).get_concrete_function(spec)
    return convert_variables_to_constants_v2(function)


def _convert(image_function: _ImageFunction, description: str, synthetic_weights: bool,
             quantize: bool, calibration_dir: str | None, num_calibration_images: int,
             progress: Progress) -> ConvertedBase:
    # The frozen function owns no variables, so an empty module is a valid trackable_obj
    # (without one the converter takes its deprecated path and warns).
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [image_function.frozen], trackable_obj=tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        images, origin = _calibration_images(image_function, calibration_dir,
                                             num_calibration_images, progress)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _calibration_batches(images, progress)
        # Input and output stay float32: the converter adds QUANTIZE / DEQUANTIZE at the ends.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        description += f", calibrated on {len(images)} {origin}"
    progress(f"converting {description}")
    tflite = converter.convert()
    _check_structure(tflite, description)
    return ConvertedBase(tflite=bytes(tflite), description=description,
                         synthetic_weights=synthetic_weights, quantized=quantize)


def _calibration_images(image_function: _ImageFunction, calibration_dir: str | None,
                        count: int, progress: Progress) -> tuple[np.ndarray, str]:
    """Calibration images and where they came from (for the description)."""
    height, width = image_function.height, image_function.width
    if calibration_dir is not None:
        images = load_calibration_images(calibration_dir, height, width, count)
        progress(f"calibration: {len(images)} images from {calibration_dir}")
        return images, f"images from {calibration_dir}"
    progress(f"WARNING: no calibration directory given; calibrating int8 ranges on {count} "
             "SYNTHETIC images: quantization may fit real photos poorly")
    return synthetic_images(count, height, width, SYNTHETIC_SEED + 1), "synthetic images"


def _calibration_batches(images: np.ndarray, progress: Progress) -> Iterator[list[np.ndarray]]:
    step = max(1, len(images) // 4)
    for index in range(len(images)):
        yield [images[index:index + 1]]
        if (index + 1) % step == 0 or index + 1 == len(images):
            progress(f"calibrating {index + 1}/{len(images)}")


def _check_structure(tflite: bytes, description: str) -> None:
    """One subgraph, builtin ops only, no variable ops: what the fusion step relies on."""
    model = model_io.read_model_bytes(tflite, description)
    forbidden = sorted({model_io.operator_name(code) for code in model.operatorCodes
                        if model_io.operator_name(code) in FORBIDDEN_OPS or not model_io.is_builtin(code)})
    if len(model.subgraphs) != 1 or forbidden:
        raise VerificationError(f"converted base ({description}) has {len(model.subgraphs)} "
                                f"subgraphs and forbidden ops {forbidden}; expected one "
                                "builtin-only subgraph")


def _read_image(path: str, height: int, width: int) -> np.ndarray | None:
    try:
        decoded = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        return None
    resized = tf.image.resize(tf.cast(decoded, tf.float32), (height, width))
    return np.clip(resized.numpy(), 0, 255)


def _precision(quantize: bool) -> str:
    return "int8" if quantize else "float32"


def _shapes(image_function: _ImageFunction) -> str:
    return (f"{image_function.height}x{image_function.width} -> "
            f"{image_function.features}")


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
