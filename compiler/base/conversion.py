"""Converts a frozen `image -> bottleneck` function to a base `.tflite`: one subgraph,
builtin ops only, full-int8 by default (calibrated on a folder of images or, with a warning,
on synthetic ones) with float32 input and output. Every Keras-side base source ends here.

Freezing comes first because Keras 3 weights converted as resource variables silently stay
uninitialised (NaN output, no error; tensorflow/tensorflow#98964): constants cannot be lost.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.errors import InvalidInputError, VerificationError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
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
class ImageFunction:
    """A frozen `image -> bottleneck` graph and the image size it takes."""
    frozen: tf.types.experimental.ConcreteFunction
    height: int
    width: int
    features: int


def freeze(image_to_bottleneck: Callable, height: int, width: int):
    """Traces with a dynamic batch and turns every variable into a constant."""
    spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="image")
    function = tf.function(image_to_bottleneck).get_concrete_function(spec)
    return convert_variables_to_constants_v2(function)


def convert(image_function: ImageFunction, description: str, synthetic_weights: bool,
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


def load_calibration_images(directory: str, height: int, width: int, limit: int) -> np.ndarray:
    """Up to `limit` jpg/png/bmp images from `directory` (sorted by name), resized, as
    float32 [n, height, width, 3] pixels in [0, 255]. Unreadable files are skipped."""
    if limit < 1:
        raise InvalidInputError(f"calibration image count must be >= 1, got {limit}")
    directory = user_files.check_directory(directory, "--calibration_dir", "a folder of .jpg/.png/.bmp images")
    try:
        listed = os.listdir(directory)
    except OSError as error:
        raise InvalidInputError(f"--calibration_dir {user_files.shown(directory)} cannot be listed: "
                                f"{error.strerror}") from None
    names = sorted(name for name in listed if name.lower().endswith(IMAGE_EXTENSIONS))
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


def synthetic_images(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random images (8x8 noise upsampled), float32 [count, h, w, 3] in [0, 255]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(count, 8, 8, 3)).astype(np.float32)
    images = tf.image.resize(coarse, (height, width), method="bilinear").numpy()
    return np.clip(images, 0, 255).astype(np.float32)


def _calibration_images(image_function: ImageFunction, calibration_dir: str | None,
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
    """The image resized, or None when the file is not a readable image (a FIFO or a
    folder named like an image, no permission, undecodable bytes)."""
    try:
        encoded = user_files.read_file_bytes(path, "--calibration_dir image")
        decoded = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (InvalidInputError, tf.errors.OpError):
        return None
    resized = tf.image.resize(tf.cast(decoded, tf.float32), (height, width))
    return np.clip(resized.numpy(), 0, 255)


def precision(quantize: bool) -> str:
    return "int8" if quantize else "float32"


def shapes(image_function: ImageFunction) -> str:
    return (f"{image_function.height}x{image_function.width} -> "
            f"{image_function.features}")


def first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
