"""Reads checkpoint files (format version 2, and version 1 on request), in the order
runtime/SPEC.md#checkpoint-file-format ("What a reader does") prescribes for every reader: regular file -> length field bounded by the
file -> header -> (read for a model: a data section of another size than the model's state is
refused from the header alone, never hashed) -> checksum over the whole file, streamed -> JSON
parsed in linear time -> every entry checked against the file size -> (for a model: fingerprint,
names, shapes and dtypes) -> only then arrays allocated and read. Nothing is allocated from a
size the file declares before that size is checked against the file.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from tflite_transfer.runtime import checkpoint as fmt
from tflite_transfer.runtime import contract, files
from tflite_transfer.runtime.errors import CheckpointError

_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_CHUNK_BYTES = 1 << 20  # the checksum streams the file in chunks of this size


@dataclasses.dataclass(frozen=True)
class _TensorEntry:
    name: str
    dtype: np.dtype  # little-endian, as stored
    shape: tuple[int, ...]
    begin: int
    end: int


def read_file(path: str, allow_version_1: bool, expected: fmt.Expectation | None = None) -> fmt.Checkpoint:
    handle, file_size = files.open_regular_file(path, "checkpoint", CheckpointError)
    try:
        with handle:
            return _read_open_file(path, handle, file_size, allow_version_1, expected)
    except OSError as error:
        raise CheckpointError(f"could not read checkpoint {path}: {error.strerror or error}") from None


def _corrupt(path: str, problem: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is corrupt or incomplete: {problem}; use an older checkpoint or "
        "start training from the model's initial weights")


def _read_open_file(path: str, handle, file_size: int, allow_version_1: bool,
                    expected: fmt.Expectation | None) -> fmt.Checkpoint:
    length_size = fmt.LENGTH_FIELD.size
    if file_size < length_size:
        raise _corrupt(path, f"the file is {file_size} bytes, too short for the 8-byte header length")
    (header_length,) = fmt.LENGTH_FIELD.unpack(_read_exactly(path, handle, length_size))
    if header_length > fmt.MAX_HEADER_BYTES:
        raise _corrupt(path, f"the header length field says {header_length} bytes, more than "
                             f"the {fmt.MAX_HEADER_BYTES}-byte limit")
    if header_length > file_size - length_size:
        raise _corrupt(path, f"the header length field says {header_length} bytes but only "
                             f"{file_size - length_size} bytes follow it")
    header_bytes = _read_exactly(path, handle, header_length)
    checksum_at = fmt.checksum_offset(header_bytes)
    if checksum_at is None and not allow_version_1:
        raise CheckpointError(
            f"checkpoint {path} has no checksum: it is format version 1 (or damaged), which "
            "cannot be checked for corruption; to read it anyway pass allow_version_1=True "
            "(--allow_version_1 in the C++ demo) and save it again to convert it to version 2")
    data_size = file_size - length_size - header_length
    if expected is not None and data_size != expected.data_bytes:
        # It cannot hold this model's state, whatever its checksum says: never hash or read its
        # data (a valid 1 GiB file took 27 s and 1 GiB of memory); the header alone says why.
        metadata, entries = _checked_header(path, header_bytes, checksum_at is not None, data_size)
        fmt.check_declared(metadata["model_fingerprint"], _declared(entries), expected, path)
        raise _corrupt(path, f"its data section is {data_size} bytes, not the {expected.data_bytes} "
                             "bytes of this model's state")
    if checksum_at is not None:
        stored = header_bytes[checksum_at:checksum_at + 64].decode("ascii")
        computed = _file_checksum(path, handle, header_bytes, checksum_at, file_size)
        if computed != stored:
            raise _corrupt(path, f"its checksum does not match its content (stored "
                                 f"{stored[:12]}…, computed {computed[:12]}…): the file was damaged")
    metadata, entries = _checked_header(path, header_bytes, checksum_at is not None, data_size)
    if expected is not None:  # before a tensor is allocated or read
        fmt.check_declared(metadata["model_fingerprint"], _declared(entries), expected, path)
    handle.seek(length_size + header_length)
    tensors = {}
    for entry in entries:  # sorted by offset and contiguous, so the reads are sequential
        try:  # the byte size is checked against the file; [0, 2**63] still overflows numpy
            array = np.empty(entry.shape, dtype=entry.dtype)
        except (ValueError, OverflowError, MemoryError) as error:
            raise _corrupt(path, f"tensor {entry.name!r} has an impossible shape "
                                 f"{list(entry.shape)} ({error})") from None
        if array.nbytes:
            buffer = memoryview(array).cast("B")
            if _read_into(handle, buffer) != len(buffer):
                raise _corrupt(path, f"the file ended inside tensor {entry.name!r} (was it "
                                     "truncated while being read?)")
        tensors[entry.name] = array.astype(entry.dtype.newbyteorder("="), copy=False)
    return fmt.Checkpoint(tensors=dict(sorted(tensors.items())),
                          model_fingerprint=metadata["model_fingerprint"],
                          format_version=int(metadata["format_version"]), metadata=metadata)


def _checked_header(path: str, header_bytes: bytes, has_checksum: bool,
                    data_size: int) -> tuple[dict[str, str], list[_TensorEntry]]:
    """The metadata and the tensor entries, sorted by offset, tiling the data section."""
    header = _parse_header(path, header_bytes)
    metadata = _validate_metadata(path, header.pop(fmt.METADATA_KEY, None), has_checksum)
    return metadata, _validate_layout(path, header, data_size)


def _declared(entries: list[_TensorEntry]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return {entry.name: (entry.shape, entry.dtype) for entry in entries}


def _file_checksum(path: str, handle, header_bytes: bytes, checksum_at: int, file_size: int) -> str:
    """The checksum of the whole file, streamed: bounded memory whatever the file's size."""
    length_field = fmt.LENGTH_FIELD.pack(len(header_bytes))
    remaining = file_size - len(length_field) - len(header_bytes)

    def chunks():
        nonlocal remaining
        yield length_field
        yield header_bytes
        while remaining > 0:
            chunk = handle.read(min(_CHUNK_BYTES, remaining))
            if not chunk:
                raise _corrupt(path, "the file ended early (was it truncated while being read?)")
            remaining -= len(chunk)
            yield chunk

    return contract.sha256_with_hex_zeroed(chunks(), len(length_field) + checksum_at)


def _read_into(handle, buffer: memoryview) -> int:
    filled = 0
    while filled < len(buffer):
        count = handle.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def _read_exactly(path: str, handle, size: int) -> bytes:
    buffer = bytearray(size)  # callers bound `size` by the file size first
    if _read_into(handle, memoryview(buffer)) != size:
        raise _corrupt(path, "the file ended early (was it truncated while being read?)")
    return bytes(buffer)


def _parse_header(path: str, header_bytes: bytes) -> dict:
    def reject_duplicates(pairs):
        seen = set()  # a set: linear in the number of keys (a list made 200k keys take minutes)
        for key, _ in pairs:
            if key in seen:
                # Readers disagree on which duplicate wins; refuse instead of guessing.
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
        return dict(pairs)

    try:
        header_text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _corrupt(path, f"the header is not UTF-8 ({error})") from None
    try:
        header = json.loads(header_text, object_pairs_hook=reject_duplicates)
    except (ValueError, RecursionError) as error:
        raise _corrupt(path, f"the header is not valid JSON ({str(error)[:200]})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, f"the header is a JSON {type(header).__name__}, not an object")
    return header


def _validate_metadata(path: str, metadata, has_checksum: bool) -> dict[str, str]:
    if metadata is None:
        raise CheckpointError(
            f"checkpoint {path} has no __metadata__, so it is not a {fmt.FORMAT_NAME} file (a plain "
            "safetensors file?); pass a checkpoint written by write_checkpoint")
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        raise _corrupt(path, "__metadata__ must be an object of string values")
    if metadata.get("format") != fmt.FORMAT_NAME:
        raise CheckpointError(
            f"checkpoint {path} is not a {fmt.FORMAT_NAME} file (__metadata__.format is "
            f"{metadata.get('format')!r}); pass a checkpoint written by write_checkpoint")
    version = metadata.get("format_version")
    expected = str(fmt.FORMAT_VERSION) if has_checksum else str(fmt.VERSION_1)
    if version != expected:
        is_newer = isinstance(version, str) and version.isdigit() and int(version) > fmt.FORMAT_VERSION
        newer = " (written by a newer tflite-transfer? upgrade it)" if is_newer else ""
        stated = "missing" if version is None else f"{version!r}"
        checksum = "with" if has_checksum else "without"
        raise CheckpointError(
            f"checkpoint {path} has format_version {stated} {checksum} a checksum; this reader "
            f"supports version {fmt.FORMAT_VERSION} (checksummed) and, on request, version "
            f"{fmt.VERSION_1}{newer}")
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
    except UnicodeEncodeError:  # a lone "\ud800" escape: valid JSON, not a name
        raise _corrupt(path, f"tensor name {name!r} is not valid Unicode") from None
    if not isinstance(entry, dict) or set(entry) != _TENSOR_KEYS:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise _corrupt(path, f"tensor {name!r} must be an object with exactly the keys "
                             f"{sorted(_TENSOR_KEYS)}, got {keys}")
    code = entry["dtype"]
    if not isinstance(code, str) or code not in fmt.DTYPE_BY_CODE:
        raise _corrupt(path, f"tensor {name!r} has unsupported dtype {code!r}; this reader "
                             f"supports {fmt.SUPPORTED_CODES}")
    dtype = fmt.DTYPE_BY_CODE[code]
    shape = entry["shape"]
    if (not isinstance(shape, list) or len(shape) > fmt.MAX_DIMENSIONS
            or not all(_is_uint64(size) for size in shape)):
        raise _corrupt(path, f"tensor {name!r} has shape {shape!r}; expected a list of at most "
                             f"{fmt.MAX_DIMENSIONS} non-negative integers")
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
