"""Checks every value a caller hands TransferModel before it reaches the interpreter: inputs
(images or any tensor), labels, bottlenecks, learning rates, counts and training state. Each refusal is one
InvalidInputError line naming the tensor, its shape/dtype/value and what is expected; a refused
value changes nothing."""

from __future__ import annotations

import math
import numbers

import numpy as np

from tflite_transfer.runtime import contract
from tflite_transfer.runtime.errors import InvalidInputError, UnsupportedModelError

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


def model_input(value, name: str, kind: str, sample_shape: tuple[int, ...], dtype: np.dtype,
                value_range: tuple[float, float] | None) -> np.ndarray:
    """A batch (or one sample) for the model's input, named `name` in messages: shape and dtype
    always; the value range where one is known (float inputs; an integer dtype bounds itself)."""
    array = as_array(value, name)
    if array.ndim == len(sample_shape):
        array = array[None]
    if array.ndim != len(sample_shape) + 1 or tuple(array.shape[1:]) != sample_shape:
        raise InvalidInputError(f"{name}: shape {list(array.shape)} does not fit the model's "
                                f"[batch, {', '.join(map(str, sample_shape))}]")
    if not len(array):
        raise InvalidInputError(f"{name}: the batch is empty; pass at least one sample")
    if dtype.kind == "f":
        if array.dtype.kind == "b":
            raise InvalidInputError(f"{name}: dtype bool is not a numeric input value")
        array = np.ascontiguousarray(array, dtype)
        if not np.isfinite(array).all():
            raise InvalidInputError(f"{name}: contains NaN or Inf")
        if value_range and (array.min() < value_range[0] or array.max() > value_range[1]):
            what = "pixels" if kind == contract.IMAGE_KIND else "values"
            raise InvalidInputError(
                f"{name}: values span [{array.min():g}, {array.max():g}] but the model takes "
                f"{what} in [{value_range[0]:g}, {value_range[1]:g}]")
    elif array.dtype != dtype:
        raise InvalidInputError(f"{name}: dtype {array.dtype}, the model takes {dtype} "
                                "(quantized input: pass the raw values)")
    return np.ascontiguousarray(array)


def input_spec(metadata: contract.ModelMetadata, details: dict, source: str, signature: str = contract.LOAD) -> contract.InputSpec:
    """The input as the metadata describes it (version 3; checked against the signature) or
    as versions 1 and 2 implied it (an image in the signature's shape and dtype)."""
    shape = tuple(int(d) for d in details["shape_signature"][1:])
    dtype = str(np.dtype(details["dtype"]))
    if not shape or min(shape) < 1:
        raise UnsupportedModelError(f"{source}: the input has shape {list(details['shape_signature'])}; "
                                    "expected [batch, sizes >= 1]")
    if metadata.input is None:
        return contract.InputSpec(contract.IMAGE_KIND, dtype, shape, metadata.image_range, metadata.image_range)
    if (metadata.input.shape, metadata.input.dtype) != (shape, dtype):
        raise UnsupportedModelError(
            f"{source}: the metadata describes the input as {metadata.input.dtype} {list(metadata.input.shape)} "
            f"but '{signature}' takes {dtype} {list(shape)}; recompile the model")
    return metadata.input


def labels(value, batch: int, label: contract.LabelSpec, num_outputs: int) -> np.ndarray:
    array = as_array(value, "label")
    if label.class_ids:
        if array.ndim == 0:
            array = array[None]
        if array.dtype.kind not in "iu" or array.shape != (batch,):
            raise InvalidInputError(f"label: expected {batch} integer class ids, got "
                                    f"{array.dtype} shape {list(array.shape)}")
        return _checked_class_ids(array, num_outputs)
    if label.one_hot and array.dtype.kind in "iu" and (array.ndim == 0 or array.shape == (batch,)):
        # Class ids given to a model that takes one-hot rows: encoded here (Python convenience).
        ids = _checked_class_ids(array.reshape(-1), num_outputs)
        return np.ascontiguousarray(np.eye(num_outputs, dtype=np.float32)[ids])
    if array.ndim == 1:
        array = array[None]
    if array.shape != (batch, num_outputs) or array.dtype.kind not in "fiu":
        kind = "one-hot (or soft) float targets" if label.one_hot else "float targets"
        raise InvalidInputError(f"label: expected {kind} [{batch}, {num_outputs}], "
                                f"got {array.dtype} shape {list(array.shape)}")
    with np.errstate(over="ignore"):  # beyond float32: Inf, refused next
        array = np.ascontiguousarray(array, np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError("label: contains NaN or Inf")
    if label.one_hot:
        _check_one_hot_rows(array)
    return array


def _checked_class_ids(array: np.ndarray, num_outputs: int) -> np.ndarray:
    bad = array[(array < 0) | (array >= num_outputs)]
    if bad.size:
        raise InvalidInputError(f"label: {bad[0]} is outside [0, {num_outputs})")
    return np.ascontiguousarray(array, np.int32)


def _check_one_hot_rows(array: np.ndarray) -> None:
    """Rows >= 0 summing to 1: the cross-entropy gradient softmax - target assumes it."""
    negative = np.argwhere(array < 0)
    if len(negative):
        row, column = negative[0]
        raise InvalidInputError(f"label: row {row} has {array[row, column]:g} at class {column}; "
                                "one-hot and soft targets are >= 0")
    sums = array.astype(np.float64).sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > contract.ONE_HOT_SUM_TOLERANCE)
    if len(off):
        raise InvalidInputError(f"label: row {off[0]} sums to {sums[off[0]]:g}; one-hot and soft targets "
                                f"sum to 1 (within {contract.ONE_HOT_SUM_TOLERANCE:g})")


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
    with np.errstate(over="ignore"):   # values beyond float32 become Inf: refused just below
        array = np.ascontiguousarray(array, np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError("bottleneck: contains NaN or Inf (or values beyond float32)")
    return array


def learning_rate(value, what: str = "learning rate") -> float:
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{what} must be a real number, got {type(value).__name__} {value!r:.60}")
    try:
        rate = float(value)
    except OverflowError:  # an int (or Fraction) beyond float: 10**400
        rate = math.inf if value > 0 else -math.inf
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
