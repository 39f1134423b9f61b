"""Checks every value a caller hands TransferModel before it reaches the interpreter: images,
labels, bottlenecks, learning rates, counts and training state. Each refusal is one
InvalidInputError line naming the tensor, its shape/dtype/value and what is expected; a refused
value changes nothing."""

from __future__ import annotations

import numbers

import numpy as np

from tflite_transfer.runtime import contract
from tflite_transfer.runtime.errors import InvalidInputError

MAX_LEARNING_RATE, MAX_STEP = contract.MAX_LEARNING_RATE, contract.MAX_STEP


def as_array(value, what: str) -> np.ndarray:
    """np.asarray that refuses ragged nests, strings and objects with one line."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise InvalidInputError(f"{what}: not a rectangular numeric array ({str(error)[:120]})") from None
    if array.dtype.kind not in "biuf":
        raise InvalidInputError(f"{what}: dtype {array.dtype} is not numeric (got {type(value).__name__})")
    return array


def images(value, image_shape: tuple[int, ...], image_dtype: np.dtype,
           image_range: tuple[float, float] | None) -> np.ndarray:
    array = as_array(value, "image")
    if array.ndim == len(image_shape):
        array = array[None]
    if array.ndim != len(image_shape) + 1 or tuple(array.shape[1:]) != image_shape:
        raise InvalidInputError(f"image: shape {list(array.shape)} does not fit the model's "
                                f"[batch, {', '.join(map(str, image_shape))}]")
    if not len(array):
        raise InvalidInputError("image: the batch is empty; pass at least one image")
    if image_dtype.kind == "f":
        if array.dtype.kind == "b":
            raise InvalidInputError("image: dtype bool is not a pixel value")
        array = np.ascontiguousarray(array, image_dtype)
        if not np.isfinite(array).all():
            raise InvalidInputError("image: contains NaN or Inf")
        if image_range and (array.min() < image_range[0] or array.max() > image_range[1]):
            raise InvalidInputError(
                f"image: values span [{array.min():g}, {array.max():g}] but the base expects "
                f"pixels in [{image_range[0]:g}, {image_range[1]:g}]")
    elif array.dtype != image_dtype:
        raise InvalidInputError(f"image: dtype {array.dtype}, the model takes {image_dtype} "
                                "(quantized input: pass the raw pixel values)")
    return np.ascontiguousarray(array)


def labels(value, batch: int, label: contract.LabelSpec, num_outputs: int) -> np.ndarray:
    array = as_array(value, "label")
    if label.class_ids:
        if array.ndim == 0:
            array = array[None]
        if array.dtype.kind not in "iu" or array.shape != (batch,):
            raise InvalidInputError(f"label: expected {batch} integer class ids, got "
                                    f"{array.dtype} shape {list(array.shape)}")
        bad = array[(array < 0) | (array >= num_outputs)]
        if bad.size:
            raise InvalidInputError(f"label: {bad[0]} is outside [0, {num_outputs})")
        return np.ascontiguousarray(array, np.int32)
    if array.ndim == 1:
        array = array[None]
    if array.shape != (batch, num_outputs) or array.dtype.kind not in "fiu":
        raise InvalidInputError(f"label: expected float targets [{batch}, {num_outputs}], "
                                f"got {array.dtype} shape {list(array.shape)}")
    array = np.ascontiguousarray(array, np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError("label: contains NaN or Inf")
    return array


def bottlenecks(value, bottleneck_size: int) -> np.ndarray:
    array = as_array(value, "bottleneck")
    if array.dtype.kind == "b":
        raise InvalidInputError("bottleneck: dtype bool; pass float features from `load`")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != bottleneck_size:
        raise InvalidInputError(f"bottleneck: shape {list(array.shape)} does not fit "
                                f"[batch, {bottleneck_size}]")
    if not len(array):
        raise InvalidInputError("bottleneck: the batch is empty; pass at least one sample")
    array = np.ascontiguousarray(array, np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError("bottleneck: contains NaN or Inf (or values beyond float32)")
    return array


def learning_rate(value, what: str = "learning rate") -> float:
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{what} must be a real number, got {type(value).__name__} {value!r:.60}")
    rate = float(value)
    if not (np.isfinite(rate) and 0 < rate <= MAX_LEARNING_RATE):
        raise InvalidInputError(
            f"{what} must be finite, > 0 and <= {MAX_LEARNING_RATE:g}, got {rate!r} (0 would not "
            "train; larger rates overflow float32 weights)")
    return rate


def positive_int(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{what} must be an integer >= 1, got {type(value).__name__} {value!r:.60}")
    return int(value)


def state(value, entries: tuple[contract.StateEntry, ...]) -> dict[str, np.ndarray]:
    """The training state checked for form (names, shapes, dtypes) and meaning (finite floats
    except in a base's own state, learning rate in (0, MAX_LEARNING_RATE], step in [0, MAX_STEP])."""
    if not isinstance(value, dict):
        raise InvalidInputError(f"state must be a dict of name -> numpy array (from get_state), "
                                f"got {type(value).__name__}")
    names = {entry.name for entry in entries}
    missing, extra = sorted(names - set(value)), sorted(set(value) - names, key=str)
    if missing or extra:
        raise InvalidInputError(f"state: missing {missing}, unexpected {extra}")
    checked = {}
    for entry in entries:
        array = as_array(value[entry.name], f"state '{entry.name}'")
        if array.shape != entry.shape or array.dtype != entry.numpy_dtype:
            raise InvalidInputError(f"state '{entry.name}': {array.dtype} {list(array.shape)}, "
                                    f"expected {entry.dtype} {list(entry.shape)}")
        # A base's own state may legitimately hold -inf (a running maximum's start) or NaN.
        if array.dtype.kind == "f" and entry.role != contract.BASE_STATE and not np.isfinite(array).all():
            raise InvalidInputError(f"state '{entry.name}': contains NaN or Inf")
        if entry.role == contract.LEARNING_RATE:
            for rate in array.reshape(-1):
                learning_rate(float(rate), f"state '{entry.name}'")
        if entry.role == contract.STEP and array.size and not (0 <= array.min() and array.max() <= MAX_STEP):
            raise InvalidInputError(f"state '{entry.name}': step {array.reshape(-1)[0]} is outside "
                                    f"[0, {MAX_STEP}]")
        # np.require keeps 0-d arrays 0-d (ascontiguousarray makes them [1], and the
        # interpreter would silently reshape the variable).
        checked[entry.name] = np.require(array, requirements="C")
    return checked
