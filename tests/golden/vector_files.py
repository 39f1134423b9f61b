"""The file vectors of vectors.json: damaged copies of the real model (vectors/model.tflite, made
by tests/golden/make_model.py) and checkpoints for that model. Every refused checkpoint but the
few marked as damaged is well-formed with a valid checksum: only its meaning is wrong (a
learning rate of 0, a step of 2^31 - 1, NaN weights, another model's fingerprint...), so a
runtime that checks only the format accepts it and fails its test.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import tempfile
from pathlib import Path

import numpy as np

from tflite_transfer.runtime import checkpoint, contract
from tflite_transfer.runtime.interpreter import read_metadata
from tests.golden.vectors import FLOAT32_ABOVE_MAX_LEARNING_RATE, FLOAT32_MAX, FLOAT32_TINY, INT32_MAX, INT32_MIN

MODEL = "vectors/model.tflite"
_SEED = 20261207
OTHER_FINGERPRINT = hashlib.sha256(b"another model").hexdigest()
_SAME_FILE = {"version_1_allowed": "version_1"}  # one file, read with and without allow_version_1


def model_metadata(model_bytes: bytes) -> contract.ModelMetadata:
    return read_metadata(model_bytes, MODEL)


def base_state(metadata: contract.ModelMetadata) -> dict[str, np.ndarray]:
    """Deterministic, meaningful values for every state variable of the model."""
    rng = np.random.default_rng(_SEED)
    state = {}
    for entry in metadata.state:
        if entry.role == contract.STEP:
            state[entry.name] = np.full(entry.shape, 42, np.int32)
        elif entry.role == contract.LEARNING_RATE:
            state[entry.name] = np.full(entry.shape, 0.01, np.float32)
        elif entry.slot == "v":
            state[entry.name] = np.abs(rng.normal(size=entry.shape)).astype(entry.dtype)
        else:
            state[entry.name] = rng.normal(size=entry.shape).astype(entry.dtype)
    return state


def _written(state: dict[str, np.ndarray], fingerprint: str, extra: dict | None = None) -> bytes:
    """The checkpoint exactly as runtime/checkpoint.py writes it."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "vector.ckpt"
        checkpoint.write_checkpoint(path, state, fingerprint, extra)
        return path.read_bytes()


def _crafted(entries: list[tuple[str, np.ndarray]], metadata: dict, rename: tuple[bytes, bytes] | None = None) -> bytes:
    """A checkpoint laid out by hand (tensors in the order given), stamped with a valid checksum
    when the metadata has one; `rename` edits the header text (same length) before stamping."""
    header: dict = {checkpoint.METADATA_KEY: metadata}
    offset, chunks = 0, []
    for name, array in entries:
        array = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
        code = next(code for code, dtype in checkpoint.DTYPE_BY_CODE.items() if dtype == array.dtype)
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        chunks.append(array.tobytes())
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    if rename:
        assert len(rename[0]) == len(rename[1]) and rename[0] in text
        text = text.replace(rename[0], rename[1], 1)
    data = struct.pack("<Q", len(text)) + text + b"".join(chunks)
    at = checkpoint.checksum_offset(text)
    if at is None:
        return data
    digest = contract.sha256_with_hex_zeroed([data], 8 + at).encode()
    return data[:8 + at] + digest + data[8 + at + 64:]


def _metadata(fingerprint: str, version: str = "2", checksum: bool = True) -> dict:
    metadata = {"format": checkpoint.FORMAT_NAME, "format_version": version, "model_fingerprint": fingerprint}
    if checksum:
        metadata[checkpoint.CHECKSUM_KEY] = contract.DIGEST_PLACEHOLDER
    return metadata


def _sha256_of_tensors(state: dict[str, np.ndarray]) -> dict[str, str]:
    return {name: hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            for name, value in sorted(state.items())}


def checkpoint_vectors(model_bytes: bytes) -> tuple[list[dict], dict[str, bytes]]:
    """(vectors, file name -> bytes): restore_checkpoint(file) into the model of MODEL."""
    metadata = model_metadata(model_bytes)
    fingerprint, good = metadata.fingerprint, base_state(metadata)
    kernel = metadata.entries_with_role(contract.KERNEL)[0].name
    bias = metadata.entries_with_role(contract.BIAS)[0].name
    slots = metadata.entries_with_role(contract.SLOT)
    step = metadata.entries_with_role(contract.STEP)[0].name
    rate = metadata.entries_with_role(contract.LEARNING_RATE)[0].name

    def changed(name, value):
        return dict(good, **{name: value})

    def at(array, index, value):
        array = array.copy()
        array.reshape(-1)[index] = value
        return array

    ordered = sorted(good.items())  # name order, not the writer's widest-first order
    v1_file = _crafted(ordered, _metadata(fingerprint, "1", checksum=False))
    good_file = _written(good, fingerprint, {"num_samples_cached": "24"})
    flipped = bytearray(good_file)
    flipped[-3] ^= 0x04
    # (name, bytes, accepted state or None, why, allow_version_1)
    cases = [
        ("good", good_file, good, "the model's state as the writer writes it", False),
        ("learning_rate_max", _written(changed(rate, np.float32([1e6])), fingerprint), changed(rate, np.float32([1e6])),
         "learning rate exactly the bound", False),
        ("learning_rate_tiny", _written(changed(rate, np.float32([FLOAT32_TINY])), fingerprint),
         changed(rate, np.float32([FLOAT32_TINY])), "the smallest positive float32 learning rate", False),
        ("step_zero", _written(changed(step, np.int32([0])), fingerprint), changed(step, np.int32([0])), "step 0", False),
        ("step_max", _written(changed(step, np.int32([2**31 - 2])), fingerprint), changed(step, np.int32([2**31 - 2])),
         "step exactly the bound", False),
        ("name_order", _crafted(ordered, _metadata(fingerprint)), good,
         "tensors in name order (readers use data_offsets, not an order)", False),
        ("version_1_allowed", v1_file, good, "format version 1, read on request", True),
        ("learning_rate_zero", _written(changed(rate, np.float32([0])), fingerprint), None, "learning rate 0", False),
        ("learning_rate_negative_zero", _written(changed(rate, np.float32([-0.0])), fingerprint), None,
         "learning rate -0.0", False),
        ("learning_rate_negative", _written(changed(rate, np.float32([-0.01])), fingerprint), None,
         "negative learning rate", False),
        ("learning_rate_above_max", _written(changed(rate, np.float32([FLOAT32_ABOVE_MAX_LEARNING_RATE])), fingerprint),
         None, "the next float32 above the learning-rate bound", False),
        ("learning_rate_float32_max", _written(changed(rate, np.float32([FLOAT32_MAX])), fingerprint), None,
         "learning rate 3.4e38", False),
        ("learning_rate_nan", _written(changed(rate, np.float32([math.nan])), fingerprint), None, "NaN learning rate", False),
        ("learning_rate_inf", _written(changed(rate, np.float32([math.inf])), fingerprint), None,
         "infinite learning rate", False),
        ("step_minus_one", _written(changed(step, np.int32([-1])), fingerprint), None, "step -1", False),
        ("step_int32_max", _written(changed(step, np.int32([INT32_MAX])), fingerprint), None,
         "step 2^31 - 1 (the next step wraps)", False),
        ("step_int32_min", _written(changed(step, np.int32([INT32_MIN])), fingerprint), None, "step -2^31", False),
        ("kernel_nan", _written(changed(kernel, at(good[kernel], 4, np.nan)), fingerprint), None, "a NaN weight", False),
        ("bias_inf", _written(changed(bias, at(good[bias], 1, np.inf)), fingerprint), None, "an infinite bias", False),
        ("slot_nan", _written(changed(slots[-1].name, at(good[slots[-1].name], 0, np.nan)), fingerprint), None,
         "a NaN optimizer slot", False),
        ("slot_minus_inf", _written(changed(slots[0].name, at(good[slots[0].name], 2, -np.inf)), fingerprint), None,
         "a -inf optimizer slot", False),
        ("wrong_fingerprint", _written(good, OTHER_FINGERPRINT), None, "written by another model", False),
        ("kernel_transposed", _written(changed(kernel, good[kernel].T.copy()), fingerprint), None,
         "a kernel of the wrong shape", False),
        ("kernel_too_large", _written(changed(kernel, np.zeros((good[kernel].shape[0], 700), np.float32)), fingerprint),
         None, "a kernel far larger than the model's (valid checksum)", False),
        ("bias_too_long", _written(changed(bias, np.zeros(good[bias].size + 1, np.float32)), fingerprint), None,
         "a bias one element too long", False),
        ("kernel_float64", _written(changed(kernel, good[kernel].astype(np.float64)), fingerprint), None,
         "a float64 kernel", False),
        ("step_float32", _written(changed(step, np.float32([42])), fingerprint), None, "a float32 step", False),
        ("missing_slot", _written({k: v for k, v in good.items() if k != slots[-1].name}, fingerprint), None,
         "an optimizer slot missing", False),
        ("extra_tensor", _written(changed("dense_1_kernel", np.zeros((3, 3), np.float32)), fingerprint), None,
         "a tensor the model does not have", False),
        ("duplicate_tensor", _crafted(ordered + [("dense_0_biaX", good[bias])], _metadata(fingerprint),
                                      rename=(b'"dense_0_biaX"', b'"dense_0_bias"')), None,
         "the same tensor name twice (valid checksum)", False),
        ("version_1", v1_file, None, "format version 1 without allow_version_1 (no checksum)", False),
        ("version_2_without_checksum", _crafted(ordered, _metadata(fingerprint, "2", checksum=False)), None,
         "format_version 2 without a checksum", False),
        ("version_3", _crafted(ordered, _metadata(fingerprint, "3")), None, "format_version 3 (newer)", False),
        ("bit_flipped", bytes(flipped), None, "one bit flipped in the data (checksum mismatch)", False),
        ("truncated", good_file[:-1], None, "the last byte missing", False),
        ("header_over_limit", struct.pack("<Q", checkpoint.MAX_HEADER_BYTES + 1) + good_file[8:], None,
         "a header length field one above max_header_bytes", False),
    ]
    vectors, files = [], {}
    for name, data, accepted, why, allow_version_1 in cases:
        path = f"vectors/checkpoints/{_SAME_FILE.get(name, name)}.ckpt"
        files[path] = data
        vector = {"name": name, "file": path, "allow_version_1": allow_version_1, "accept": accepted is not None,
                  "why": why}
        if accepted is None:
            vector["error"] = "CheckpointError"
        else:
            vector["state_sha256"] = _sha256_of_tensors(accepted)
        vectors.append(vector)
    return vectors, files


def model_vectors(model_bytes: bytes) -> tuple[dict, list[dict], dict[str, bytes]]:
    """(the real model's facts, refused damaged copies, file name -> bytes)."""
    offset, digest = contract.find_digest(model_bytes)
    metadata = model_metadata(model_bytes)
    model = {"file": MODEL, "bytes": len(model_bytes), "sha256": hashlib.sha256(model_bytes).hexdigest(),
             "digest_offset": offset, "model_digest": digest, "fingerprint": metadata.fingerprint,
             "contract_version": metadata.contract_version, "image": {"dtype": "uint8", "shape": [16, 12, 3]},
             "state": [{"name": e.name, "dtype": e.dtype, "shape": list(e.shape), "role": e.role} for e in metadata.state]}
    flipped = bytearray(model_bytes)
    flipped[len(model_bytes) // 3] ^= 0x10
    wrong_digit = bytearray(model_bytes)
    wrong_digit[offset] = ord("0") if wrong_digit[offset] != ord("0") else ord("1")
    marker = b'"model_digest":"'
    cases = [
        ("weight_bit_flipped", bytes(flipped), "VerificationError", "one bit flipped a third into the file"),
        ("digest_digit_changed", bytes(wrong_digit), "VerificationError", "one hex digit of the stored digest changed"),
        ("truncated", model_bytes[:len(model_bytes) // 2], "VerificationError", "the second half missing"),
        ("second_digest_field", model_bytes + marker + digest.encode() + b'"', "VerificationError",
         "a second model_digest field appended (exactly one is required)"),
        ("digest_key_renamed", model_bytes.replace(marker, b'"model_digesT":"'), "UnsupportedModelError",
         "no model_digest field: a contract version 2 model must have one"),
        ("digest_uppercase", model_bytes[:offset] + digest.upper().encode() + model_bytes[offset + 64:],
         "UnsupportedModelError", "the digest in uppercase hex is not a digest"),
    ]
    vectors, files = [], {}
    for name, data, error, why in cases:
        path = f"vectors/models/{name}.tflite"
        files[path] = data
        vectors.append({"name": name, "file": path, "accept": False, "error": error, "why": why,
                        "digest_offset": _offset_or_none(data), "stored_digest_matches": contract.digest_matches(data)})
    return model, vectors, files


def _offset_or_none(data: bytes) -> int | None:
    found = contract.find_digest(data)
    return None if found is None else found[0]


def digest_strings() -> list[dict]:
    """Small byte strings for a digest implementation alone: where the digest is found (or
    null: none, or more than one) and sha256 with those 64 digits as '0'."""
    body = b'xx{"model_digest":"' + contract.DIGEST_PLACEHOLDER.encode() + b'"}yy'
    stamped = contract.stamp_digest(body)
    cases = [("stamped", stamped), ("placeholder", body),
             ("two fields", stamped + stamped[2:]), ("uppercase", stamped.upper()), ("no field", b"no digest here")]
    vectors = []
    for name, data in cases:
        found = contract.find_digest(data)
        vectors.append({"name": name, "hex": data.hex(), "digest_offset": None if found is None else found[0],
                        "zeroed_sha256": None if found is None else contract.model_digest(data),
                        "matches": contract.digest_matches(data)})
    return vectors
