"""The contract's rules as data: named limits and accept/refuse vectors (tests/golden/README.md
documents the schema of vectors.json). Every value comes from runtime/contract.py,
runtime/checkpoint.py and runtime/inputs.py, so changing a rule there changes these files, and
each runtime's own tests (Python: tests/test_golden.py; C++: tests/cpp/test_cpp_golden.py; JS:
runtime/web/test/) then fail until that runtime follows.

Values a runtime feeds through float32 are float32-exact, so no language rounds a vector
across a bound. Non-finite numbers are the strings "nan", "inf", "-inf".
"""

from __future__ import annotations

import math

import numpy as np

from tflite_transfer.runtime import checkpoint, contract, inputs

SCHEMA_VERSION = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)   # 1.4e-45
FLOAT32_ABOVE_MAX_LEARNING_RATE = float(np.nextafter(np.float32(inputs.MAX_LEARNING_RATE), np.float32(np.inf)))
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)


def number(value: float | int):
    """A JSON number, or "nan"/"inf"/"-inf" (JSON has no non-finite numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def limits() -> dict:
    """Every bound and name a runtime needs, named once."""
    return {
        "contract": {
            "format": contract.FORMAT,
            "metadata_key": contract.METADATA_KEY,
            "contract_version": contract.CONTRACT_VERSION,
            "supported_contract_versions": list(contract.SUPPORTED_CONTRACT_VERSIONS),
            "signatures": list(contract.SIGNATURES),
            "image_signatures": list(contract.IMAGE_SIGNATURES),
            "tensor_names": {name: name for name in (
                contract.IMAGE, contract.BOTTLENECK, contract.LABEL, contract.LOSS, contract.PROBABILITIES,
                contract.PREDICTIONS, contract.STEP, contract.LEARNING_RATE)},
            "state_roles": list(contract.ROLES),
            "label_kinds": list(contract.LABEL_KINDS),
            "digest_marker": '"model_digest":"',
            "digest_hex_digits": len(contract.DIGEST_PLACEHOLDER),
        },
        "training": {
            "learning_rate_exclusive_minimum": 0.0,
            "max_learning_rate": float(inputs.MAX_LEARNING_RATE),
            "min_step": 0,
            "max_step": inputs.MAX_STEP,
        },
        "checkpoint": {
            "format": checkpoint.FORMAT_NAME,
            "format_version": checkpoint.FORMAT_VERSION,
            "version_1": checkpoint.VERSION_1,
            "max_header_bytes": checkpoint.MAX_HEADER_BYTES,
            "max_dimensions": checkpoint.MAX_DIMENSIONS,
            "length_field_bytes": checkpoint.LENGTH_FIELD.size,
            "header_alignment": checkpoint._HEADER_ALIGNMENT,
            "metadata_key": checkpoint.METADATA_KEY,
            "checksum_key": checkpoint.CHECKSUM_KEY,
            "checksum_marker": checkpoint._CHECKSUM_MARKER.decode(),
            "metadata_key_order": ["format", "format_version", "model_fingerprint", checkpoint.CHECKSUM_KEY],
            "dtype_codes": {code: {"numpy": dtype.name, "bytes": dtype.itemsize}
                            for code, dtype in checkpoint.DTYPE_BY_CODE.items()},
        },
    }


def _rate(value: float, why: str) -> dict:
    accept = math.isfinite(value) and 0 < value <= inputs.MAX_LEARNING_RATE
    return {"value": number(value), "accept": accept, "why": why} | ({} if accept else {"error": "InvalidInputError"})


def learning_rates() -> list[dict]:
    """set_learning_rate(value): accepted iff finite, > 0 and <= max_learning_rate."""
    return [_rate(*case) for case in [
        (FLOAT32_TINY, "the smallest positive float32"),
        (float(np.float32(0.01)), "a usual rate"),
        (1.0, "one"),
        (float(inputs.MAX_LEARNING_RATE), "exactly the bound"),
        (0.0, "zero does not train"),
        (-0.0, "negative zero is zero"),
        (-1.0, "negative"),
        (-FLOAT32_TINY, "the largest negative float32"),
        (FLOAT32_ABOVE_MAX_LEARNING_RATE, "the next float32 above the bound"),
        (FLOAT32_MAX, "the largest float32"),
        (1e39, "beyond float32 (inf once stored)"),
        (math.inf, "infinite"), (-math.inf, "negative infinite"), (math.nan, "NaN"),
    ]]


def steps() -> list[dict]:
    """The `step` a state or checkpoint may hold: 0 <= step <= max_step (int32)."""
    cases = [(0, "fresh"), (1, "one step"), (42, "usual"), (inputs.MAX_STEP, "exactly the bound"),
             (-1, "negative"), (INT32_MIN, "int32 minimum"), (INT32_MAX, "int32 maximum: the next step wraps")]
    return [{"value": value, "accept": 0 <= value <= inputs.MAX_STEP, "why": why}
            | ({} if 0 <= value <= inputs.MAX_STEP else {"error": "InvalidInputError"})
            for value, why in cases]


def training_steps() -> list[dict]:
    """One `train` call from a state whose step is `step`: refused when it would pass max_step."""
    cases = [(0, "fresh"), (inputs.MAX_STEP - 1, "the last step that may be taken"),
             (inputs.MAX_STEP, "no step left")]
    return [{"step": value, "accept": value + 1 <= inputs.MAX_STEP, "why": why}
            | ({} if value + 1 <= inputs.MAX_STEP else {"error": "InvalidInputError"})
            for value, why in cases]


# Input contexts: what a model's signatures take (the real model of vectors/model.tflite has uint8
# images without a pixel range, so float images are checked against a declared context).
CONTEXTS = {
    "classifier": {"image_shape": [4, 3, 2], "image_dtype": "float32", "image_range": [0.0, 255.0],
                   "bottleneck_size": 7, "num_outputs": 3,
                   "label": {"kind": "class_ids", "dtype": "int32", "shape": []}},
    "regressor": {"image_shape": [4, 3, 2], "image_dtype": "float32", "image_range": [-1.0, 1.0],
                  "bottleneck_size": 7, "num_outputs": 2,
                  "label": {"kind": "targets", "dtype": "float32", "shape": [2]}},
}


def _values(count: int, low: float, high: float, seed: int) -> list[float]:
    """float32-exact values in [low, high], both ends included."""
    values = np.random.default_rng(seed).uniform(low, high, count).astype(np.float32).astype(float).tolist()
    if count >= 2:
        values[0], values[-1] = low, high
    return values


def _with(values: list, index: int, value) -> list:
    changed = list(values)
    changed[index] = value
    return changed


def _input(name, context, tensor, dtype, shape, values, accept, batch=None) -> dict:
    vector = {"name": name, "context": context, "tensor": tensor, "dtype": dtype, "shape": shape,
              "values": [number(v) for v in values], "accept": accept}
    if batch is not None:
        vector["batch"] = batch
    if not accept:
        vector["error"] = "InvalidInputError"
    return vector


def input_vectors() -> list[dict]:
    """Images, labels and bottlenecks as a signature's caller passes them (batch first, values
    flat in C order; `batch` is the number of samples labels go with). Shapes that are wrong
    also have a wrong element count, so a runtime that takes flat arrays sees them too."""
    pixels = _values(24, 0.0, 255.0, 1)
    two = _values(48, 0.0, 255.0, 2)
    bottleneck = _values(14, -3.0, 3.0, 3)
    targets = _values(4, -1.0, 1.0, 4)
    image = [1, 4, 3, 2]
    return [
        _input("one image in range, both bounds included", "classifier", "image", "float32", image, pixels, True),
        _input("two images", "classifier", "image", "float32", [2, 4, 3, 2], two, True),
        _input("uint8 pixels for a float model are converted", "classifier", "image", "uint8", image,
               [int(v) for v in pixels], True),
        _input("a NaN pixel", "classifier", "image", "float32", image, _with(pixels, 5, math.nan), False),
        _input("an infinite pixel", "classifier", "image", "float32", image, _with(pixels, 6, math.inf), False),
        _input("a -inf pixel", "classifier", "image", "float32", image, _with(pixels, 7, -math.inf), False),
        _input("a pixel above the range", "classifier", "image", "float32", image, _with(pixels, 8, 255.5), False),
        _input("a pixel below the range", "classifier", "image", "float32", image, _with(pixels, 9, -0.5), False),
        _input("a pixel outside [-1, 1]", "regressor", "image", "float32", image,
               _with(_values(24, -1.0, 1.0, 5), 3, 1.0078125), False),
        _input("wrong channel count", "classifier", "image", "float32", [1, 4, 3, 3], pixels + pixels[:12], False),
        _input("wrong image size", "classifier", "image", "float32", [1, 4, 3, 1], pixels[:12], False),
        _input("an empty batch of images", "classifier", "image", "float32", [0, 4, 3, 2], [], False),
        _input("class ids in range", "classifier", "label", "int32", [2], [0, 2], True, batch=2),
        _input("a class id equal to num_outputs", "classifier", "label", "int32", [2], [0, 3], False, batch=2),
        _input("a negative class id", "classifier", "label", "int32", [2], [-1, 0], False, batch=2),
        _input("fractional class ids (float dtype)", "classifier", "label", "float32", [2], [0.5, 1.0], False, batch=2),
        _input("fewer labels than samples", "classifier", "label", "int32", [1], [0], False, batch=2),
        _input("more labels than samples", "classifier", "label", "int32", [3], [0, 1, 2], False, batch=2),
        _input("finite targets", "regressor", "label", "float32", [2, 2], targets, True, batch=2),
        _input("a NaN target", "regressor", "label", "float32", [2, 2], _with(targets, 1, math.nan), False, batch=2),
        _input("an infinite target", "regressor", "label", "float32", [2, 2], _with(targets, 2, math.inf), False,
               batch=2),
        _input("targets of the wrong width", "regressor", "label", "float32", [2, 3], targets + targets[:2], False,
               batch=2),
        _input("bottlenecks", "classifier", "bottleneck", "float32", [2, 7], bottleneck, True),
        _input("a NaN bottleneck value", "classifier", "bottleneck", "float32", [2, 7],
               _with(bottleneck, 4, math.nan), False),
        _input("an infinite bottleneck value", "classifier", "bottleneck", "float32", [2, 7],
               _with(bottleneck, 5, -math.inf), False),
        _input("float64 values beyond float32", "classifier", "bottleneck", "float64", [2, 7],
               _with(bottleneck, 6, 1e39), False),
        _input("bottlenecks of the wrong width", "classifier", "bottleneck", "float32", [2, 6], bottleneck[:12], False),
        _input("an empty batch of bottlenecks", "classifier", "bottleneck", "float32", [0, 7], [], False),
    ]
