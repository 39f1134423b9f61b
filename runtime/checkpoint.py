"""Training checkpoints: the file side of a compiled model's `save()` / `restore()` signatures.

A checkpoint holds every trainable variable and optimizer slot by name, in the safetensors
layout, so the C++/Android runtime reads and writes the same files (BUILD.md, "Checkpoint
file format", documents it byte by byte). numpy only: this module must import without
TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import struct
import tempfile
from collections.abc import Iterable, Mapping

import numpy as np

from tflite_transfer.runtime.errors import CheckpointError, InvalidInputError

FORMAT_NAME = "tflite-transfer-checkpoint"
FORMAT_VERSION = 1

# The safetensors reference reader refuses larger headers too; a bigger length field means
# the file is corrupt, and trusting it would make us allocate gigabytes before noticing.
MAX_HEADER_BYTES = 100_000_000
# numpy 1.x arrays have at most 32 dimensions; more in a header is corruption, not a tensor.
MAX_DIMENSIONS = 32
_LENGTH_FIELD = struct.Struct("<Q")
_HEADER_ALIGNMENT = 8
_METADATA_KEY = "__metadata__"
_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})

# safetensors dtype code -> little-endian numpy dtype (the file is always little-endian).
_DTYPE_BY_CODE: dict[str, np.dtype] = {
    code: np.dtype(spec)
    for code, spec in [
        ("F64", "<f8"), ("F32", "<f4"), ("F16", "<f2"),
        ("I64", "<i8"), ("I32", "<i4"), ("I16", "<i2"), ("I8", "i1"),
        ("U64", "<u8"), ("U32", "<u4"), ("U16", "<u2"), ("U8", "u1"),
        ("BOOL", "?"),
    ]
}
_CODE_BY_KIND_AND_SIZE = {(dtype.kind, dtype.itemsize): code
                          for code, dtype in _DTYPE_BY_CODE.items()}
_SUPPORTED_CODES = ", ".join(_DTYPE_BY_CODE)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The tensors of one checkpoint file plus the metadata that says which model wrote it."""

    tensors: dict[str, np.ndarray]  # name -> array (C-contiguous, native byte order)
    model_fingerprint: str
    format_version: int
    metadata: dict[str, str]  # the file's full __metadata__


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
        digest.update(_LENGTH_FIELD.pack(len(part_bytes)))
        digest.update(part_bytes)
    return digest.hexdigest()


def write_checkpoint(path, tensors: Mapping[str, np.ndarray], model_fingerprint: str,
                     extra_metadata: Mapping[str, str] | None = None) -> None:
    """Atomically write `tensors` to `path`: readers see the old file or the new, never a mix."""
    path = os.fspath(path)
    metadata = _build_metadata(model_fingerprint, extra_metadata)
    header_bytes, arrays = _build_header(tensors, metadata)
    try:
        _replace_atomically(path, header_bytes, arrays)
    except OSError as error:
        raise CheckpointError(
            f"could not write checkpoint {path}: {error}; the previous file (if any) is "
            "unchanged - check that the directory exists, is writable and has free space"
        ) from error


def read_checkpoint(path) -> Checkpoint:
    """Read and fully validate a checkpoint; every problem is a CheckpointError naming the file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as checkpoint_file:
            file_size = os.fstat(checkpoint_file.fileno()).st_size
            return _read_open_file(path, checkpoint_file, file_size)
    except FileNotFoundError as error:
        raise CheckpointError(
            f"checkpoint {path} does not exist; check the path, or start training from the "
            "model's initial weights") from error
    except OSError as error:
        raise CheckpointError(f"could not read checkpoint {path}: {error}") from error


def check_compatible(checkpoint: Checkpoint,
                     expected: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                     model_fingerprint: str, path=None) -> None:
    """Raise CheckpointError unless `checkpoint` can be restored into the model described.

    `expected` maps each variable the model's `restore` signature takes to (shape, dtype).
    """
    where = "checkpoint" if path is None else f"checkpoint {os.fspath(path)}"
    if checkpoint.model_fingerprint != model_fingerprint:
        raise CheckpointError(
            f"{where} was written by another model (fingerprint "
            f"{_abbreviate(checkpoint.model_fingerprint)} vs {_abbreviate(model_fingerprint)}); "
            "restore it into the model that saved it, or start from this model's initial weights")
    missing = sorted(set(expected) - set(checkpoint.tensors))
    unexpected = sorted(set(checkpoint.tensors) - set(expected))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {_list_names(missing)}")
        if unexpected:
            problems.append(f"unexpected {_list_names(unexpected)}")
        raise CheckpointError(
            f"{where} does not hold this model's variables: {'; '.join(problems)}")
    mismatches = []
    for name in sorted(expected):
        expected_shape, expected_dtype = expected[name]
        expected_shape = tuple(int(size) for size in expected_shape)
        expected_dtype = np.dtype(expected_dtype).newbyteorder("=")
        stored = checkpoint.tensors[name]
        if stored.shape != expected_shape or stored.dtype.newbyteorder("=") != expected_dtype:
            mismatches.append(
                f"{name!r} is {list(stored.shape)} {stored.dtype} in the checkpoint but "
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
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "model_fingerprint": model_fingerprint}
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
                f"supported: {_SUPPORTED_CODES} (float16/32/64, int8-64, uint8-64, bool)")
        little_endian[name] = (code, np.asarray(value, dtype=_DTYPE_BY_CODE[code], order="C"))
    # Widest items first, then by name (the order the safetensors reference writer uses):
    # every tensor then starts at a multiple of its item size, so a C++ reader can mmap the
    # file and use the data in place without unaligned loads.
    order = sorted(little_endian, key=lambda name: (-little_endian[name][1].itemsize,
                                                    name.encode("utf-8")))
    header: dict[str, object] = {_METADATA_KEY: metadata}
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
    if name == _METADATA_KEY:
        raise InvalidInputError(f"tensor name {name!r} is reserved for the checkpoint metadata")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInputError(f"tensor name {name!r} is not valid Unicode ({error})") from error


def _replace_atomically(path: str, header_bytes: bytes, arrays: list[np.ndarray]) -> None:
    # The temporary file must live in the target's directory: os.replace is only atomic
    # within one filesystem, and a temp file elsewhere would turn it into copy + delete.
    directory = os.path.dirname(os.path.abspath(path))
    file_descriptor, temp_path = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(file_descriptor, "wb") as temp_file:
            temp_file.write(_LENGTH_FIELD.pack(len(header_bytes)))
            temp_file.write(header_bytes)
            for array in arrays:
                if array.nbytes:
                    temp_file.write(memoryview(array).cast("B"))
            temp_file.flush()
            # Without fsync, a power cut after os.replace can leave the new name pointing at
            # a file whose data never reached the disk (zero-length or garbage on ext4/f2fs).
            os.fsync(temp_file.fileno())
        with contextlib.suppress(OSError):
            # mkstemp creates mode 0600; an overwritten checkpoint keeps its permissions.
            os.chmod(temp_path, os.stat(path).st_mode & 0o7777)
        os.replace(temp_path, path)
    except BaseException:  # includes KeyboardInterrupt: never leave a half-written temp file
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself (best effort: not every platform can open a directory)."""
    try:
        directory_descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(directory_descriptor)
    except OSError:
        pass
    finally:
        os.close(directory_descriptor)


# --- reading -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _TensorEntry:
    name: str
    dtype: np.dtype  # little-endian, as stored
    shape: tuple[int, ...]
    begin: int
    end: int


def _corrupt(path: str, problem: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is corrupt or incomplete: {problem}; use an older checkpoint or "
        "start training from the model's initial weights")


def _read_open_file(path: str, checkpoint_file, file_size: int) -> Checkpoint:
    if file_size < _LENGTH_FIELD.size:
        raise _corrupt(path, f"the file is {file_size} bytes, too short for the 8-byte "
                             "header length")
    length_field = _read_exactly(path, checkpoint_file, _LENGTH_FIELD.size)
    (header_length,) = _LENGTH_FIELD.unpack(length_field)
    if header_length > MAX_HEADER_BYTES:
        raise _corrupt(path, f"the header length field says {header_length} bytes, more than "
                             f"the {MAX_HEADER_BYTES}-byte limit")
    if header_length > file_size - _LENGTH_FIELD.size:
        raise _corrupt(path, f"the header length field says {header_length} bytes but only "
                             f"{file_size - _LENGTH_FIELD.size} bytes follow it")
    header = _parse_header(path, _read_exactly(path, checkpoint_file, header_length))
    metadata = _validate_metadata(path, header.pop(_METADATA_KEY, None))
    data_size = file_size - _LENGTH_FIELD.size - header_length
    entries = _validate_layout(path, header, data_size)

    tensors = {}
    for entry in entries:  # sorted by offset and contiguous, so the reads are sequential
        try:
            array = np.empty(entry.shape, dtype=entry.dtype)
        except (ValueError, OverflowError, MemoryError) as error:
            raise _corrupt(path, f"tensor {entry.name!r} has an impossible shape "
                                 f"{list(entry.shape)} ({error})") from error
        if array.nbytes:
            buffer = memoryview(array).cast("B")
            if _read_into(checkpoint_file, buffer) != len(buffer):
                raise _corrupt(path, f"the file ended inside tensor {entry.name!r} (was it "
                                     "truncated while being read?)")
        tensors[entry.name] = array.astype(entry.dtype.newbyteorder("="), copy=False)
    return Checkpoint(tensors=dict(sorted(tensors.items())),
                      model_fingerprint=metadata["model_fingerprint"],
                      format_version=FORMAT_VERSION, metadata=metadata)


def _read_into(checkpoint_file, buffer: memoryview) -> int:
    filled = 0
    while filled < len(buffer):
        count = checkpoint_file.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def _read_exactly(path: str, checkpoint_file, size: int) -> bytes:
    buffer = bytearray(size)
    if _read_into(checkpoint_file, memoryview(buffer)) != size:
        raise _corrupt(path, "the file ended early (was it truncated while being read?)")
    return bytes(buffer)


def _parse_header(path: str, header_bytes: bytes) -> dict:
    def reject_duplicates(pairs):
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            duplicated = sorted({key for key in keys if keys.count(key) > 1})
            # Readers disagree on which duplicate wins; refuse instead of guessing.
            raise ValueError(f"duplicate keys {duplicated}")
        return dict(pairs)

    try:
        header_text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _corrupt(path, f"the header is not UTF-8 ({error})") from error
    try:
        header = json.loads(header_text, object_pairs_hook=reject_duplicates)
    except (ValueError, RecursionError) as error:
        raise _corrupt(path, f"the header is not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise _corrupt(path, f"the header is a JSON {type(header).__name__}, not an object")
    return header


def _validate_metadata(path: str, metadata) -> dict[str, str]:
    if metadata is None:
        raise CheckpointError(
            f"checkpoint {path} has no __metadata__, so it is not a {FORMAT_NAME} file (a plain "
            "safetensors file?); pass a checkpoint written by write_checkpoint")
    if not isinstance(metadata, dict) or not all(
            isinstance(value, str) for value in metadata.values()):
        raise _corrupt(path, "__metadata__ must be an object of string values")
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"checkpoint {path} is not a {FORMAT_NAME} file (__metadata__.format is "
            f"{metadata.get('format')!r}); pass a checkpoint written by write_checkpoint")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        is_newer = isinstance(version, str) and version.isdigit() and int(version) > FORMAT_VERSION
        newer = " (written by a newer tflite-transfer? upgrade it)" if is_newer else ""
        stated = "missing" if version is None else f"{version!r}"
        raise CheckpointError(
            f"checkpoint {path} has format_version {stated}; this reader supports version "
            f"{FORMAT_VERSION} only{newer}")
    if not metadata.get("model_fingerprint"):
        raise _corrupt(path, "__metadata__ has no model_fingerprint")
    return dict(metadata)


def _validate_layout(path: str, header: dict, data_size: int) -> list[_TensorEntry]:
    """Check each tensor entry and that together they tile the data section exactly."""
    entries = [_validate_entry(path, name, entry, data_size) for name, entry in header.items()]
    # Any order of tensors is valid (the safetensors writer orders them differently from
    # older writers), but they must cover the data section without gaps or overlaps.
    entries.sort(key=lambda entry: (entry.begin, entry.end))
    position = 0
    previous = None
    for entry in entries:
        if entry.begin < position:
            raise _corrupt(path, f"tensors {previous.name!r} {[previous.begin, previous.end]} and "
                                 f"{entry.name!r} {[entry.begin, entry.end]} overlap")
        if entry.begin > position:
            raise _corrupt(path, f"bytes {position}..{entry.begin} of the data section belong to "
                                 f"no tensor (gap before {entry.name!r})")
        position, previous = entry.end, entry
    if position != data_size:
        raise _corrupt(path, f"{data_size - position} bytes of trailing data after the last "
                             f"tensor (the tensors end at byte {position} of {data_size})")
    return entries


def _validate_entry(path: str, name: str, entry, data_size: int) -> _TensorEntry:
    if not name:
        raise _corrupt(path, "a tensor has an empty name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone "\ud800" escape: valid JSON, not a name
        raise _corrupt(path, f"tensor name {name!r} is not valid Unicode") from error
    if not isinstance(entry, dict) or set(entry) != _TENSOR_KEYS:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise _corrupt(path, f"tensor {name!r} must be an object with exactly the keys "
                             f"{sorted(_TENSOR_KEYS)}, got {keys}")
    code = entry["dtype"]
    if not isinstance(code, str) or code not in _DTYPE_BY_CODE:
        raise _corrupt(path, f"tensor {name!r} has unsupported dtype {code!r}; this reader "
                             f"supports {_SUPPORTED_CODES}")
    dtype = _DTYPE_BY_CODE[code]
    shape = entry["shape"]
    if (not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS
            or not all(_is_uint64(size) for size in shape)):
        raise _corrupt(path, f"tensor {name!r} has shape {shape!r}; expected a list of at most "
                             f"{MAX_DIMENSIONS} non-negative integers")
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_uint64, offsets)):
        raise _corrupt(path, f"tensor {name!r} has data_offsets {offsets!r}; expected "
                             "[begin, end] as non-negative integers")
    begin, end = offsets
    if not begin <= end <= data_size:
        raise _corrupt(path, f"tensor {name!r} has data_offsets {offsets} outside the "
                             f"{data_size}-byte data section (truncated file?)")
    expected_bytes = math.prod(shape) * dtype.itemsize
    if end - begin != expected_bytes:
        raise _corrupt(path, f"tensor {name!r} is {shape} {code} = {expected_bytes} bytes but "
                             f"its data_offsets {offsets} span {end - begin} bytes")
    return _TensorEntry(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def _is_uint64(value) -> bool:
    # bool is an int subclass in Python; `true` in a shape is corruption, not 1.
    return type(value) is int and 0 <= value < 2**64


# --- messages ----------------------------------------------------------------------------------

def _abbreviate(model_fingerprint: str, length: int = 12) -> str:
    if len(model_fingerprint) <= length:
        return model_fingerprint
    return model_fingerprint[:length] + "…"


def _list_names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{len(names)} tensor{'s' if len(names) != 1 else ''}: {shown}{more}"
