"""Training checkpoints: the file side of a compiled model's `save()` / `restore()` signatures.

A checkpoint holds every trainable variable and optimizer slot by name, in the safetensors
layout, so the C++/Android runtime reads and writes the same files (runtime/SPEC.md#checkpoint-file-format
documents it byte by byte). Format version 2 adds a checksum over the whole
file (`__metadata__.checksum`, the scheme of contract.sha256_with_hex_zeroed), so a flipped
bit anywhere is refused instead of restored. This module writes and checks compatibility;
runtime/checkpoint_reader.py reads. numpy only: it must import without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
from collections.abc import Iterable, Mapping

import numpy as np

from tflite_transfer.runtime import contract, files
from tflite_transfer.runtime.errors import CheckpointError, InvalidInputError

FORMAT_NAME = "tflite-transfer-checkpoint"
FORMAT_VERSION = 2            # what writers write; version 1 (no checksum) is read on request
VERSION_1 = 1
CHECKSUM_KEY = "checksum"

# The safetensors reference reader refuses larger headers too; a bigger length field means
# the file is corrupt, and trusting it would make us allocate gigabytes before noticing.
MAX_HEADER_BYTES = 100_000_000
# numpy 1.x arrays have at most 32 dimensions; more in a header is corruption, not a tensor.
MAX_DIMENSIONS = 32
LENGTH_FIELD = struct.Struct("<Q")
_HEADER_ALIGNMENT = 8
METADATA_KEY = "__metadata__"

# safetensors dtype code -> little-endian numpy dtype (the file is always little-endian).
DTYPE_BY_CODE: dict[str, np.dtype] = {
    code: np.dtype(spec)
    for code, spec in [
        ("F64", "<f8"), ("F32", "<f4"), ("F16", "<f2"),
        ("I64", "<i8"), ("I32", "<i4"), ("I16", "<i2"), ("I8", "i1"),
        ("U64", "<u8"), ("U32", "<u4"), ("U16", "<u2"), ("U8", "u1"),
        ("BOOL", "?"),
    ]
}
_CODE_BY_KIND_AND_SIZE = {(dtype.kind, dtype.itemsize): code
                          for code, dtype in DTYPE_BY_CODE.items()}
SUPPORTED_CODES = ", ".join(DTYPE_BY_CODE)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The tensors of one checkpoint file plus the metadata that says which model wrote it."""

    tensors: dict[str, np.ndarray]  # name -> array (C-contiguous, native byte order)
    model_fingerprint: str
    format_version: int       # 2, or 1 when read with allow_version_1=True
    metadata: dict[str, str]  # the file's full __metadata__ (with the checksum in version 2)


def fingerprint(parts: Iterable[bytes | str]) -> str:
    """SHA-256 hex digest identifying a model, e.g. over its .tflite bytes and variable specs.

    Each part (str as UTF-8) is preceded by its length as 8 little-endian bytes, so
    ("ab", "c") and ("a", "bc") give different fingerprints.
    """
    if isinstance(parts, (str, bytes, bytearray, memoryview)):
        raise InvalidInputError(
            "fingerprint() takes an iterable of parts, e.g. [model_bytes, 'head=softmax'], "
            "not a single str or bytes")
    digest = hashlib.sha256()
    for index, part in enumerate(parts):
        if isinstance(part, str):
            part_bytes = memoryview(part.encode("utf-8"))
        elif isinstance(part, (bytes, bytearray, memoryview)):
            part_bytes = memoryview(part).cast("B")
        else:
            raise InvalidInputError(
                f"fingerprint part {index} is a {type(part).__name__}; pass bytes or str")
        digest.update(LENGTH_FIELD.pack(len(part_bytes)))
        digest.update(part_bytes)
    return digest.hexdigest()


def write_checkpoint(path, tensors: Mapping[str, np.ndarray], model_fingerprint: str,
                     extra_metadata: Mapping[str, str] | None = None) -> None:
    """Atomically write `tensors` to `path` (format version 2, checksummed): readers see the
    old file or the new, never a mix (files.write_atomically: symlinks written through, stale
    temporary files of a crash removed, umask respected)."""
    path = files.check_path(path, "checkpoint", InvalidInputError)
    metadata = _build_metadata(model_fingerprint, extra_metadata)
    header_bytes, arrays = _build_header(tensors, metadata)
    chunks = [LENGTH_FIELD.pack(len(header_bytes)), _stamp_checksum(header_bytes, arrays)]
    chunks += [memoryview(array).cast("B") for array in arrays if array.nbytes]
    files.write_atomically(path, chunks, "checkpoint", CheckpointError)


@dataclasses.dataclass(frozen=True)
class Expectation:
    """What a model's `restore` takes, checked against a file's header before its tensor data
    is read (and, when the data section cannot be this state's size, before it is hashed)."""

    model_fingerprint: str
    tensors: Mapping[str, tuple[tuple[int, ...], np.dtype]]  # name -> (shape, dtype)

    @property
    def data_bytes(self) -> int:
        """The size of the data section of a checkpoint of this state."""
        return sum(math.prod(int(size) for size in shape) * np.dtype(dtype).itemsize
                   for shape, dtype in self.tensors.values())


def read_checkpoint(path, allow_version_1: bool = False, expected: Expectation | None = None) -> Checkpoint:
    """Read and fully validate a checkpoint; every problem is a CheckpointError naming the file.

    The checksum is verified before the header is parsed. Version 1 files carry no checksum,
    so a corrupted one cannot be told from a good one: they are refused unless
    `allow_version_1=True` (then read as before; save again to convert them to version 2).
    With `expected` (a model's state), a file that cannot hold that state is refused from its
    header before any tensor data is read (check_compatible's checks, and the data size).
    """
    from tflite_transfer.runtime.checkpoint_reader import read_file  # noqa: PLC0415 (cycle)

    return read_file(files.check_path(path, "checkpoint", CheckpointError), allow_version_1, expected)


def read_model_state(path, metadata: contract.ModelMetadata, allow_version_1: bool = False) -> dict[str, np.ndarray]:
    """The training state a checkpoint holds for the model `metadata` describes, checked exactly
    as `restore_checkpoint` takes it: the file's data size, fingerprint, names, shapes and
    dtypes against the model (from its header), the file (checksum, layout), then the values' meaning (runtime/inputs.py `state`: finite
    floats, learning rate, step). Everything that reads a checkpoint into a model (restore,
    the compiler's export) goes through here, so they accept and refuse the same files."""
    from tflite_transfer.runtime import inputs  # noqa: PLC0415 (inputs is the runtime's, not the format's)

    expected = Expectation(metadata.fingerprint, {entry.name: (entry.shape, entry.numpy_dtype)
                                                  for entry in metadata.state})
    # Checked against the model from its header, before its data is read (or, when its size
    # cannot be this state's, hashed).
    saved = read_checkpoint(path, allow_version_1=allow_version_1, expected=expected)
    try:
        return inputs.state(saved.tensors, metadata.state)
    except InvalidInputError as error:
        raise CheckpointError(f"checkpoint {os.fspath(path)}: {error}") from None


def check_compatible(checkpoint: Checkpoint,
                     expected: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                     model_fingerprint: str, path=None) -> None:
    """Raise CheckpointError unless `checkpoint` can be restored into the model described.

    `expected` maps each variable the model's `restore` signature takes to (shape, dtype).
    """
    declared = {name: (array.shape, array.dtype) for name, array in checkpoint.tensors.items()}
    check_declared(checkpoint.model_fingerprint, declared, Expectation(model_fingerprint, expected), path)


def check_declared(file_fingerprint: str, declared: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                   expected: Expectation, path=None) -> None:
    """Raise CheckpointError unless a file's fingerprint and tensors (name -> (shape, dtype), as
    its header declares them or as read) are the ones `expected` describes."""
    where = "checkpoint" if path is None else f"checkpoint {os.fspath(path)}"
    model_fingerprint = expected.model_fingerprint
    if file_fingerprint != model_fingerprint:
        raise CheckpointError(
            f"{where} was written by another model (fingerprint "
            f"{_abbreviate(file_fingerprint)} vs {_abbreviate(model_fingerprint)}); "
            "restore it into the model that saved it, or start from this model's initial weights")
    missing = sorted(set(expected.tensors) - set(declared))
    unexpected = sorted(set(declared) - set(expected.tensors))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {_list_names(missing)}")
        if unexpected:
            problems.append(f"unexpected {_list_names(unexpected)}")
        raise CheckpointError(
            f"{where} does not hold this model's variables: {'; '.join(problems)}")
    mismatches = []
    for name in sorted(expected.tensors):
        expected_shape, expected_dtype = expected.tensors[name]
        expected_shape = tuple(int(size) for size in expected_shape)
        expected_dtype = np.dtype(expected_dtype).newbyteorder("=")
        stored_shape, stored_dtype = tuple(declared[name][0]), np.dtype(declared[name][1]).newbyteorder("=")
        if stored_shape != expected_shape or stored_dtype != expected_dtype:
            mismatches.append(
                f"{name!r} is {list(stored_shape)} {stored_dtype} in the checkpoint but "
                f"{list(expected_shape)} {expected_dtype} in the model")
    if mismatches:
        raise CheckpointError(f"{where} does not fit the model: {'; '.join(mismatches)}")


# --- writing -----------------------------------------------------------------------------------

def _build_metadata(model_fingerprint, extra_metadata) -> dict[str, str]:
    if (not isinstance(model_fingerprint, str) or not model_fingerprint
            or any(char not in "0123456789abcdefABCDEF" for char in model_fingerprint)):
        raise InvalidInputError(
            f"model_fingerprint must be a non-empty hex string (see fingerprint()), "
            f"got {model_fingerprint!r}")
    # Key order is part of the format (C++ writes byte-identical files): format,
    # format_version, model_fingerprint, checksum, then the caller's extras sorted by key.
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "model_fingerprint": model_fingerprint,
                CHECKSUM_KEY: contract.DIGEST_PLACEHOLDER}
    for key, value in sorted((extra_metadata or {}).items()):
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInputError(
                f"extra_metadata must map str to str, got {key!r}: {value!r}")
        if key in metadata:
            raise InvalidInputError(
                f"extra_metadata key {key!r} is reserved for the checkpoint format")
        metadata[key] = value
    return metadata


def _build_header(tensors, metadata) -> tuple[bytes, list[np.ndarray]]:
    """Validate `tensors`; return the padded JSON header and the arrays in file order."""
    if not isinstance(tensors, Mapping):
        raise InvalidInputError(
            f"tensors must be a mapping of name -> numpy array, got {type(tensors).__name__}")
    little_endian = {}
    for name, value in tensors.items():
        _check_tensor_name(name)
        if not isinstance(value, (np.ndarray, np.generic)):
            raise InvalidInputError(
                f"tensor {name!r} is a {type(value).__name__}; pass a numpy array")
        code = _CODE_BY_KIND_AND_SIZE.get((value.dtype.kind, value.dtype.itemsize))
        if code is None:
            raise InvalidInputError(
                f"tensor {name!r} has dtype {value.dtype}, which a checkpoint cannot hold; "
                f"supported: {SUPPORTED_CODES} (float16/32/64, int8-64, uint8-64, bool)")
        little_endian[name] = (code, np.asarray(value, dtype=DTYPE_BY_CODE[code], order="C"))
    # Widest items first, then by name (the order the safetensors reference writer uses):
    # every tensor then starts at a multiple of its item size, so a C++ reader can mmap the
    # file and use the data in place without unaligned loads.
    order = sorted(little_endian, key=lambda name: (-little_endian[name][1].itemsize,
                                                    name.encode("utf-8")))
    header: dict[str, object] = {METADATA_KEY: metadata}
    offset = 0
    for name in order:
        code, array = little_endian[name]
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % _HEADER_ALIGNMENT)
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise InvalidInputError(
            f"checkpoint header would be {len(header_bytes)} bytes (limit {MAX_HEADER_BYTES}); "
            "too many tensors or names too long")
    return header_bytes, [little_endian[name][1] for name in order]


def _check_tensor_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"tensor names must be non-empty strings, got {name!r}")
    if name == METADATA_KEY:
        raise InvalidInputError(f"tensor name {name!r} is reserved for the checkpoint metadata")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInputError(f"tensor name {name!r} is not valid Unicode ({error})") from error


def _stamp_checksum(header_bytes: bytes, arrays: list[np.ndarray]) -> bytes:
    """The header with its checksum placeholder replaced by the file's checksum."""
    offset = checksum_offset(header_bytes)
    file_chunks = [LENGTH_FIELD.pack(len(header_bytes)), header_bytes]
    file_chunks += [memoryview(array).cast("B") for array in arrays if array.nbytes]
    checksum = contract.sha256_with_hex_zeroed(file_chunks, LENGTH_FIELD.size + offset)
    return header_bytes[:offset] + checksum.encode("ascii") + header_bytes[offset + 64:]


_CHECKSUM_MARKER = b'"' + CHECKSUM_KEY.encode() + b'":"'


def checksum_offset(header_bytes: bytes) -> int | None:
    """Offset in the header of the checksum's 64 hex digits: the single `"checksum":"<64
    lowercase hex>"` in it (inside a JSON string a quote is escaped, so only the metadata key
    can match), or None when there is not exactly one. Linear: bytes.find, no regex."""
    found = []
    start = header_bytes.find(_CHECKSUM_MARKER)
    while start >= 0 and len(found) < 2:
        digits = start + len(_CHECKSUM_MARKER)
        candidate = header_bytes[digits:digits + 65]
        if (len(candidate) == 65 and candidate[64:] == b'"'
                and all(byte in b"0123456789abcdef" for byte in candidate[:64])):
            found.append(digits)
        start = header_bytes.find(_CHECKSUM_MARKER, start + 1)
    return found[0] if len(found) == 1 else None


# --- messages ----------------------------------------------------------------------------------

def _abbreviate(model_fingerprint: str, length: int = 12) -> str:
    if len(model_fingerprint) <= length:
        return model_fingerprint
    return model_fingerprint[:length] + "…"


def _list_names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{len(names)} tensor{'s' if len(names) != 1 else ''}: {shown}{more}"
