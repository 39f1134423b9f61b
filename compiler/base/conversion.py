"""Converts a frozen `input -> bottleneck` function to a base `.tflite`: one subgraph,
builtin ops only, full-int8 by default with float32 input and output. Every Keras-side base
source ends here. The input is any float tensor: an image [h, w, c] (c = 1, 3 or 4) is
calibrated on a folder of images, a .npy file (--calibration_data) or, with a warning, on
synthetic images; any other input on a .npy file or on synthetic values over the range the
base expects (--base_input_range).

Freezing comes first because Keras 3 weights converted as resource variables silently stay
uninitialised (NaN output, no error; tensorflow/tensorflow#98964): constants cannot be lost.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler import user_files
from tflite_transfer.runtime import contract
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
    input_range: tuple[float, float] | None = (0.0, 255.0)  # values the base takes (None: not known)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Where int8 calibration inputs come from, and the value range the base expects."""
    directory: str | None = None                     # images (image inputs only)
    data: str | None = None                          # a .npy file of inputs [n, ...]
    count: int = 32
    input_range: tuple[float, float] | None = None   # stated (--base_input_range); images: 0..255 if None


@dataclasses.dataclass(frozen=True)
class InputFunction:
    """A frozen `input -> bottleneck` graph and the per-sample input shape it takes."""
    frozen: tf.types.experimental.ConcreteFunction
    input_shape: tuple[int, ...]
    features: int                       # values per sample of the output

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3 and self.input_shape[-1] in (1, 3, 4)


def freeze(input_to_bottleneck: Callable, input_shape: tuple[int, ...]):
    """Traces with a dynamic batch and turns every variable into a constant."""
    # The converted base's signature input: `image` for images (as bases converted here were
    # always named, and apps calling such a base keep working), `input` for any other tensor.
    name = contract.DEFAULT_INPUT_NAMES[contract.input_kind(tuple(input_shape))]
    spec = tf.TensorSpec([None, *input_shape], tf.float32, name=name)
    function = tf.function(input_to_bottleneck).get_concrete_function(spec)
    return convert_variables_to_constants_v2(function)


def base_range(function: InputFunction, stated: tuple[float, float] | None) -> tuple[float, float] | None:
    """The values the converted base takes: as stated, else 0..255 pixels for an image (what
    our calibration feeds and the embedded base rescales), else not known."""
    return stated if stated is not None else ((0.0, 255.0) if function.is_image else None)


def convert(image_function: InputFunction, description: str, synthetic_weights: bool,
            quantize: bool, calibration: Calibration, progress: Progress) -> ConvertedBase:
    # The frozen function owns no variables, so an empty module is a valid trackable_obj
    # (without one the converter takes its deprecated path and warns).
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [image_function.frozen], trackable_obj=tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        images, origin = _calibration_inputs(image_function, calibration, progress)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _calibration_batches(images, progress)
        # Input and output stay float32: the converter adds QUANTIZE / DEQUANTIZE at the ends.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        description += f", calibrated on {len(images)} {origin}"
    progress(f"converting {description}")
    tflite = converter.convert()
    _check_structure(tflite, description)
    return ConvertedBase(tflite=bytes(tflite), description=description,
                         synthetic_weights=synthetic_weights, quantized=quantize,
                         input_range=base_range(image_function, calibration.input_range))


def load_calibration_images(directory: str, height: int, width: int, limit: int,
                            channels: int = 3) -> np.ndarray:
    """Up to `limit` jpg/png/bmp images from `directory` (sorted by name), resized, as
    float32 [n, height, width, channels] pixels in [0, 255]. Unreadable files are skipped."""
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
        image = _read_image(os.path.join(directory, name), height, width, channels)
        if image is not None:
            images.append(image)
        if len(images) == limit:
            break
    if not images:
        raise InvalidInputError(f"none of the {len(names)} image files in calibration directory "
                                f"{directory!r} could be decoded; use valid jpg/png/bmp files")
    return np.stack(images).astype(np.float32)


def synthetic_images(count: int, height: int, width: int, seed: int, channels: int = 3) -> np.ndarray:
    """Smooth random images (8x8 noise upsampled), float32 [count, h, w, channels] in [0, 255]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(count, 8, 8, channels)).astype(np.float32)
    images = tf.image.resize(coarse, (height, width), method="bilinear").numpy()
    return np.clip(images, 0, 255).astype(np.float32)


def _calibration_inputs(function: InputFunction, calibration: Calibration,
                        progress: Progress) -> tuple[np.ndarray, str]:
    """Calibration inputs in the range the base expects, and where they came from."""
    shape, count = function.input_shape, calibration.count
    if calibration.data is not None:
        inputs = load_calibration_data(calibration.data, shape, count)
        progress(f"calibration: {len(inputs)} inputs from {calibration.data}")
        return inputs, f"inputs from {calibration.data}"
    if not function.is_image:
        if calibration.directory is not None:
            raise InvalidInputError(f"--calibration_dir holds images, but the base's input {list(shape)} is "
                                    "not an image: give --calibration_data=FILE.npy (inputs [n, ...])")
        if calibration.input_range is None:
            raise InvalidInputError(
                f"the base's input {list(shape)} is not an image: to calibrate int8 give "
                "--calibration_data=FILE.npy (inputs [n, ...]) or --base_input_range=LO,HI (synthetic "
                "values over that range), or convert without --quantize")
        low, high = calibration.input_range
        progress(f"WARNING: calibrating int8 ranges on {count} SYNTHETIC inputs uniform in [{low:g}, {high:g}]: "
                 "quantization may fit real inputs poorly (--calibration_data)")
        rng = np.random.default_rng(SYNTHETIC_SEED + 2)
        return rng.uniform(low, high, (count, *shape)).astype(np.float32), "synthetic inputs"
    height, width, channels = shape
    if calibration.directory is not None:
        images = load_calibration_images(calibration.directory, height, width, count, channels)
        progress(f"calibration: {len(images)} images from {calibration.directory}")
        origin = f"images from {calibration.directory}"
    else:
        progress(f"WARNING: no calibration directory given; calibrating int8 ranges on {count} "
                 "SYNTHETIC images: quantization may fit real photos poorly")
        images, origin = synthetic_images(count, height, width, SYNTHETIC_SEED + 1, channels), "synthetic images"
    if calibration.input_range is not None:  # pixels 0..255 -> the range the base expects
        low, high = calibration.input_range
        images = (low + images * ((high - low) / 255.0)).astype(np.float32)
    return images, origin


def load_calibration_data(path: str, input_shape: tuple[int, ...], limit: int) -> np.ndarray:
    """Up to `limit` inputs from a .npy file holding [n, *input_shape] finite numbers."""
    data = user_files.read_file_bytes(path, "--calibration_data", "a .npy file")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InvalidInputError(f"--calibration_data {user_files.shown(path)} is not a .npy array "
                                f"({first_line(error)})") from None
    if not isinstance(array, np.ndarray):  # a .npz archive
        raise InvalidInputError(f"--calibration_data {user_files.shown(path)} is an .npz archive; save one "
                                "array with numpy.save")
    if array.dtype.kind not in "fiu" or tuple(array.shape[1:]) != tuple(input_shape) or not len(array):
        raise InvalidInputError(f"--calibration_data {user_files.shown(path)}: {array.dtype} {list(array.shape)}, "
                                f"expected numbers [n >= 1, {', '.join(map(str, input_shape))}]")
    array = array[:limit].astype(np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError(f"--calibration_data {user_files.shown(path)} holds NaN or Inf")
    return array


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


def _read_image(path: str, height: int, width: int, channels: int = 3) -> np.ndarray | None:
    """The image resized, or None when the file is not a readable image (a FIFO or a
    folder named like an image, no permission, undecodable bytes)."""
    try:
        encoded = user_files.read_file_bytes(path, "--calibration_dir image")
        decoded = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    except (InvalidInputError, tf.errors.OpError):
        return None
    resized = tf.image.resize(tf.cast(decoded, tf.float32), (height, width))
    return np.clip(resized.numpy(), 0, 255)


def precision(quantize: bool) -> str:
    return "int8" if quantize else "float32"


def shapes(function: InputFunction) -> str:
    shape = function.input_shape
    shown = f"{shape[0]}x{shape[1]}" if function.is_image and shape[2] == 3 else "x".join(map(str, shape))
    return f"{shown} -> {function.features}"


def first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
