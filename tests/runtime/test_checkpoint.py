"""Tests for runtime/checkpoint.py.

The real `safetensors` package (test extra) is the independent reference: our files must load
with it to the same arrays, and its files (carrying our metadata) must read back with ours.
"""

import errno
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import safetensors
import safetensors.numpy
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tflite_transfer.runtime import checkpoint, contract
from tflite_transfer.runtime.checkpoint import (
    FORMAT_NAME, FORMAT_VERSION, Checkpoint, check_compatible, fingerprint, read_checkpoint,
    write_checkpoint)
from tflite_transfer.runtime.errors import CheckpointError, InvalidInputError

MODEL_FINGERPRINT = fingerprint([b"base model bytes", "head=softmax classes=5"])
OTHER_FINGERPRINT = fingerprint([b"another model"])
OUR_METADATA = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "model_fingerprint": MODEL_FINGERPRINT}
SUPPORTED_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                    np.uint64, np.uint32, np.uint16, np.uint8, np.bool_]
# Files are property-tested with real fsyncs: hypothesis deadlines would be wall-time asserts.
FILE_SETTINGS = settings(deadline=None, max_examples=60)

tensor_names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12).filter(
    lambda name: name != "__metadata__")
tensor_arrays = st.sampled_from(SUPPORTED_DTYPES).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                     max_side=4)))
tensor_dicts = st.dictionaries(tensor_names, tensor_arrays, max_size=5)


def small_tensors():
    """Three tensors whose sizes and dtypes all differ (a swapped offset cannot pass)."""
    return {
        "head/dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "head/dense/bias": np.array([-0.0, 1.5, np.inf], dtype=np.float32),
        "optimizer/step": np.array(17, dtype=np.int64),
    }


def assert_same_bits(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.flags.c_contiguous
    assert actual.tobytes() == np.ascontiguousarray(expected).tobytes()


def assert_same_tensors(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert_same_bits(actual[name], expected[name])


def split_file(file_bytes):
    """(header dict, data section bytes) of a checkpoint file."""
    (header_length,) = struct.unpack("<Q", file_bytes[:8])
    return json.loads(file_bytes[8:8 + header_length]), file_bytes[8 + header_length:]


def join_file(header, data):
    """A file from an edited header, re-stamped so the edit reaches the reader's later checks."""
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    return restamp(struct.pack("<Q", len(header_bytes)) + header_bytes + data)


def restamp(file_bytes):
    """The file with a correct checksum, computed independently of the writer: hashlib over the
    bytes with the 64 digits after the single '"checksum":"' zeroed (BUILD.md)."""
    (header_length,) = struct.unpack("<Q", file_bytes[:8])
    marker = b'"checksum":"'
    header = file_bytes[8:8 + header_length]
    if header.count(marker) != 1:
        return file_bytes
    start = 8 + header.index(marker) + len(marker)
    zeroed = file_bytes[:start] + b"0" * 64 + file_bytes[start + 64:]
    digest = hashlib.sha256(zeroed).hexdigest().encode()
    return file_bytes[:start] + digest + file_bytes[start + 64:]


def without_checksum(metadata):
    return {key: value for key, value in metadata.items() if key != "checksum"}


@pytest.fixture
def valid_file(tmp_path):
    path = tmp_path / "valid.ckpt"
    write_checkpoint(path, small_tensors(), MODEL_FINGERPRINT)
    return path


# --- round trips ---------------------------------------------------------------------------------

@FILE_SETTINGS
@given(tensors=tensor_dicts, extra=st.dictionaries(
    st.text(max_size=5).filter(lambda key: key not in OUR_METADATA), st.text(max_size=5),
    max_size=2))
def test_round_trip_matches_input_and_safetensors_reference(tensors, extra):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.ckpt")
        write_checkpoint(path, tensors, MODEL_FINGERPRINT, extra)
        restored = read_checkpoint(path)
        reference = safetensors.numpy.load_file(path)
        with safetensors.safe_open(path, framework="np") as reference_file:
            reference_metadata = reference_file.metadata()
    assert_same_tensors(restored.tensors, tensors)
    assert_same_tensors(reference, tensors)
    assert restored.metadata == reference_metadata
    assert without_checksum(restored.metadata) == {**OUR_METADATA, **extra}
    assert list(restored.metadata)[:4] == ["format", "format_version", "model_fingerprint", "checksum"]
    assert restored.model_fingerprint == MODEL_FINGERPRINT
    assert restored.format_version == FORMAT_VERSION


@FILE_SETTINGS
@given(tensors=tensor_dicts)
def test_files_written_by_safetensors_read_back(tensors):
    # The reference writer orders keys its own way; we stamp its file's checksum ourselves.
    metadata = {**OUR_METADATA, "checksum": "0" * 64}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "reference.safetensors")
        safetensors.numpy.save_file(tensors, path, metadata=metadata)
        with open(path, "rb") as reference_file:
            stamped = restamp(reference_file.read())
        with open(path, "wb") as reference_file:
            reference_file.write(stamped)
        restored = read_checkpoint(path)
    assert_same_tensors(restored.tensors, tensors)
    assert without_checksum(restored.metadata) == OUR_METADATA


@FILE_SETTINGS
@given(tensors=tensor_dicts)
def test_version_1_files_read_only_when_allowed(tensors):
    version_1 = {**OUR_METADATA, "format_version": "1"}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "version_1.safetensors")
        safetensors.numpy.save_file(tensors, path, metadata=version_1)
        with pytest.raises(CheckpointError, match="no checksum: it is format version 1 .*"
                                                  "allow_version_1=True"):
            read_checkpoint(path)
        restored = read_checkpoint(path, allow_version_1=True)
    assert_same_tensors(restored.tensors, tensors)
    assert restored.metadata == version_1 and restored.format_version == 1


def test_checksum_is_sha256_of_the_file_with_its_digits_zeroed(valid_file):
    file_bytes = valid_file.read_bytes()
    header, _ = split_file(file_bytes)
    stored = header["__metadata__"]["checksum"]
    assert file_bytes.count(stored.encode()) == 1
    zeroed = file_bytes.replace(stored.encode(), b"0" * 64)
    assert hashlib.sha256(zeroed).hexdigest() == stored
    assert restamp(file_bytes) == file_bytes


def test_checksum_helper_zeroes_across_chunk_boundaries():
    data = bytes(range(256)) * 3
    expected = hashlib.sha256(data[:100] + b"0" * 64 + data[164:]).hexdigest()
    for size in (1, 7, 64, 100, 1000):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        assert contract.sha256_with_hex_zeroed(chunks, 100) == expected


@FILE_SETTINGS
@given(bits32=hnp.arrays(np.uint32, st.integers(0, 8)),
       bits16=hnp.arrays(np.uint16, st.integers(0, 8)),
       bits64=hnp.arrays(np.uint64, st.integers(0, 8)))
def test_every_float_bit_pattern_survives(bits32, bits16, bits64):
    # Viewing random integers as floats covers NaN payloads, signalling NaNs, -0.0, denormals.
    tensors = {"f32": bits32.view(np.float32), "f16": bits16.view(np.float16),
               "f64": bits64.view(np.float64)}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bits.ckpt")
        write_checkpoint(path, tensors, MODEL_FINGERPRINT)
        restored = read_checkpoint(path).tensors
    assert_same_tensors(restored, tensors)


def test_special_float32_values_are_bit_exact(tmp_path):
    bits = np.array([0x7FC00001, 0x7F800001, 0xFFC12345,  # quiet, signalling, negative NaN
                     0x80000000, 0x00000001, 0x807FFFFF,  # -0.0, smallest and largest denormal
                     0x7F800000, 0xFF800000], dtype=np.uint32)  # +inf, -inf
    values = bits.view(np.float32)
    write_checkpoint(tmp_path / "special.ckpt", {"values": values}, MODEL_FINGERPRINT)
    restored = read_checkpoint(tmp_path / "special.ckpt").tensors["values"]
    np.testing.assert_array_equal(restored.view(np.uint32), bits)


def test_big_endian_and_strided_inputs_are_stored_little_endian_and_contiguous(tmp_path):
    kernel = np.arange(20, dtype=np.float32).reshape(4, 5)
    write_checkpoint(tmp_path / "native.ckpt", {"kernel": kernel[:, ::2]}, MODEL_FINGERPRINT)
    write_checkpoint(tmp_path / "swapped.ckpt", {"kernel": kernel.astype(">f4")[:, ::2]},
                     MODEL_FINGERPRINT)
    assert (tmp_path / "native.ckpt").read_bytes() == (tmp_path / "swapped.ckpt").read_bytes()
    restored = read_checkpoint(tmp_path / "swapped.ckpt").tensors["kernel"]
    assert restored.dtype == np.dtype(np.float32) and restored.dtype.isnative
    assert_same_bits(restored, kernel[:, ::2])


def test_output_is_deterministic_and_independent_of_insertion_order(tmp_path):
    tensors = small_tensors()
    write_checkpoint(tmp_path / "a.ckpt", tensors, MODEL_FINGERPRINT, {"b": "2", "a": "1"})
    write_checkpoint(tmp_path / "b.ckpt", dict(reversed(list(tensors.items()))),
                     MODEL_FINGERPRINT, {"a": "1", "b": "2"})
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()


def test_layout_is_padded_and_every_tensor_naturally_aligned(tmp_path):
    tensors = {"a_half": np.ones(3, np.float16), "b_step": np.array(5, np.int64),
               "c_flag": np.array([True]), "d_kernel": np.ones((3,), np.float32)}
    write_checkpoint(tmp_path / "aligned.ckpt", tensors, MODEL_FINGERPRINT)
    file_bytes = (tmp_path / "aligned.ckpt").read_bytes()
    (header_length,) = struct.unpack("<Q", file_bytes[:8])
    header, data = split_file(file_bytes)
    assert header_length % 8 == 0
    assert file_bytes[8:8 + header_length].rstrip(b" ").endswith(b"}")
    offsets = sorted((entry["data_offsets"], name) for name, entry in header.items()
                     if name != "__metadata__")
    assert [name for _, name in offsets] == ["b_step", "d_kernel", "a_half", "c_flag"]
    for (begin, _), name in offsets:
        assert begin % tensors[name].itemsize == 0
    assert offsets[-1][0][1] == len(data)


def test_returned_arrays_own_their_memory(valid_file):
    restored = read_checkpoint(valid_file).tensors["head/dense/kernel"]
    restored[0, 0] = 123.0  # writable, and writing it must not touch the file
    assert read_checkpoint(valid_file).tensors["head/dense/kernel"][0, 0] == 0.0


# --- writer input validation ---------------------------------------------------------------------

@pytest.mark.parametrize("tensors, message", [
    ({"": np.ones(2, np.float32)}, "non-empty strings"),
    ({7: np.ones(2, np.float32)}, "non-empty strings"),
    ({"__metadata__": np.ones(2, np.float32)}, "reserved"),
    ({"bad\ud800name": np.ones(2, np.float32)}, "not valid Unicode"),
    ({"head/kernel": [1.0, 2.0]}, "'head/kernel' is a list"),
    ({"head/kernel": np.ones(2, np.complex64)}, "'head/kernel' has dtype complex64"),
    ({"head/kernel": np.array(["a"])}, "'head/kernel' has dtype <U1"),
    ({"head/kernel": np.array([None])}, "'head/kernel' has dtype object"),
    ({"head/kernel": np.ones(2, np.longdouble)}, "'head/kernel' has dtype"),
    ([("head/kernel", np.ones(2))], "mapping"),
])
def test_write_rejects_bad_tensors_before_touching_disk(tmp_path, tensors, message):
    if message == "'head/kernel' has dtype" and np.dtype(np.longdouble).itemsize == 8:
        tensors = {"head/kernel": np.ones(2, np.complex128)}  # longdouble is float64 here
    with pytest.raises(InvalidInputError, match=message):
        write_checkpoint(tmp_path / "model.ckpt", tensors, MODEL_FINGERPRINT)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("model_fingerprint, extra, message", [
    ("", None, "non-empty hex"),
    ("not hex!", None, "non-empty hex"),
    (b"abcd", None, "non-empty hex"),
    (MODEL_FINGERPRINT, {"format": "mine"}, "reserved"),
    (MODEL_FINGERPRINT, {"model_fingerprint": "00"}, "reserved"),
    (MODEL_FINGERPRINT, {"epochs": 3}, "str to str"),
])
def test_write_rejects_bad_metadata(tmp_path, model_fingerprint, extra, message):
    with pytest.raises(InvalidInputError, match=message):
        write_checkpoint(tmp_path / "model.ckpt", small_tensors(), model_fingerprint, extra)
    assert os.listdir(tmp_path) == []


# --- corrupt files -------------------------------------------------------------------------------

def edit_header(edit):
    """A corruption that rewrites the parsed header (and keeps the data section)."""
    def corrupt(file_bytes):
        header, data = split_file(file_bytes)
        edit(header)
        return join_file(header, data)
    return corrupt


def set_entry(name, key, value):
    return edit_header(lambda header: header[name].__setitem__(key, value))


def set_metadata(key, value):
    return edit_header(lambda header: header["__metadata__"].__setitem__(key, value))


def drop_metadata(key):
    return edit_header(lambda header: header["__metadata__"].pop(key))


CHECKSUM_FIELD = '"checksum":"' + "0" * 64 + '"'


def replace_header_text(header_text):
    """A raw header; `{C}` in it becomes a checksum field (stamped), so the reader gets past
    the checksum to the check under test."""
    header_bytes = header_text.replace("{C}", CHECKSUM_FIELD).encode("utf-8")
    return lambda file_bytes: join_file_raw(header_bytes, split_file(file_bytes)[1])


def join_file_raw(header_bytes, data):
    return restamp(struct.pack("<Q", len(header_bytes)) + header_bytes + data)


def shift_offsets(name, delta_begin, delta_end):
    def edit(header):
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [begin + delta_begin, end + delta_end]
    return edit_header(edit)


STEP = "optimizer/step"  # int64 scalar, stored first (widest item size)
BIAS = "head/dense/bias"  # float32[3], stored second
KERNEL = "head/dense/kernel"  # float32[3, 4], stored last

CORRUPTIONS = {
    "empty file": (lambda file_bytes: b"", "too short for the 8-byte header length"),
    "shorter than 8 bytes": (lambda file_bytes: file_bytes[:5], "too short"),
    "header length beyond file": (
        lambda file_bytes: struct.pack("<Q", len(file_bytes)) + file_bytes[8:], "only"),
    "absurd header length": (
        lambda file_bytes: struct.pack("<Q", 2**40) + file_bytes[8:], "limit"),
    "largest header length": (
        lambda file_bytes: b"\xff" * 8 + file_bytes[8:], "limit"),
    "header not UTF-8": (lambda file_bytes: join_file_raw(
        b"{" + CHECKSUM_FIELD.encode() + b"\xff\xfe}   ", b""), "not UTF-8"),
    "header not JSON": (replace_header_text('{{C},"a": [1, 2'), "not valid JSON"),
    "header empty": (replace_header_text(""), "no checksum"),
    "header deeply nested": (replace_header_text("{{C}," + "[" * 100_000), "not valid JSON"),
    "header is an array": (replace_header_text("[{{C}}, 2, 3]"), "JSON list, not an object"),
    "duplicate tensor name": (replace_header_text(
        '{"__metadata__": {{C}}, "w": {}, "w": {}}'), "duplicate key 'w'"),
    "no metadata": (edit_header(lambda header: header.__setitem__(
        "renamed", header.pop("__metadata__"))), "no __metadata__"),
    "metadata not an object": (edit_header(lambda header: header.__setitem__(
        "__metadata__", [header["__metadata__"]])), "string values"),
    "metadata value not a string": (set_metadata("epochs", 3), "string values"),
    "wrong format": (set_metadata("format", "pytorch"), "is not a tflite-transfer-checkpoint"),
    "no format": (drop_metadata("format"), "is not a tflite-transfer-checkpoint"),
    "no format_version": (drop_metadata("format_version"),
                          "format_version missing with a checksum; this reader supports version 2"),
    "newer format_version": (set_metadata("format_version", "3"),
                             "'3' with a checksum; this reader supports version 2 .*written by a newer"),
    "version 1 with a checksum": (set_metadata("format_version", "1"), "'1' with a checksum"),
    "garbage format_version": (set_metadata("format_version", "one"), "supports version 2"),
    "checksum removed": (drop_metadata("checksum"), "no checksum: it is format version 1"),
    "checksum uppercase": (lambda file_bytes: file_bytes.replace(
        split_file(file_bytes)[0]["__metadata__"]["checksum"].encode(),
        split_file(file_bytes)[0]["__metadata__"]["checksum"].upper().encode()), "no checksum"),
    "data changed": (lambda file_bytes: file_bytes[:-1] + bytes([file_bytes[-1] ^ 1]),
                     "checksum does not match its content"),
    "header changed": (lambda file_bytes: file_bytes.replace(b'"F32"', b'"I32"', 1),
                       "checksum does not match"),
    "two checksums": (set_metadata("another", '","checksum":"' + "0" * 64), None),
    "no model_fingerprint": (drop_metadata("model_fingerprint"), "no model_fingerprint"),
    "unknown dtype": (set_entry(BIAS, "dtype", "BF16"), f"'{BIAS}' has unsupported dtype 'BF16'"),
    "dtype not a string": (set_entry(BIAS, "dtype", 4), "unsupported dtype 4"),
    "shape not a list": (set_entry(BIAS, "shape", 3), f"'{BIAS}' has shape 3"),
    "negative shape": (set_entry(BIAS, "shape", [-3]), "non-negative integers"),
    "float shape": (set_entry(BIAS, "shape", [3.0]), "non-negative integers"),
    "boolean shape": (set_entry(STEP, "shape", [True]), "non-negative integers"),
    "too many dimensions": (set_entry(BIAS, "shape", [3] + [1] * 40), "at most 32"),
    "impossible shape": (edit_header(lambda header: header.__setitem__("empty", {
        "dtype": "F32", "shape": [0, 2**63], "data_offsets": [0, 0]})), "impossible shape"),
    "shape disagrees with offsets": (set_entry(BIAS, "shape", [2]),
                                     "= 8 bytes but its data_offsets .* span 12 bytes"),
    "dtype disagrees with offsets": (set_entry(BIAS, "dtype", "F64"), "= 24 bytes"),
    "offsets not a pair": (set_entry(BIAS, "data_offsets", [0]), "expected .begin, end."),
    "offsets negative": (set_entry(STEP, "data_offsets", [-8, 0]), "non-negative"),
    "offsets past the end": (shift_offsets(KERNEL, 4, 4), "outside the"),
    "offsets reversed": (set_entry(STEP, "data_offsets", [8, 0]), "outside the"),
    "offsets overlap": (shift_offsets(BIAS, -4, -4), "overlap"),
    "offsets leave a gap": (shift_offsets(STEP, 4, 4), "belong to no tensor"),
    "extra key in entry": (set_entry(BIAS, "quantization", None), "exactly the keys"),
    "entry not an object": (edit_header(lambda header: header.__setitem__(BIAS, [1])),
                            "exactly the keys"),
    "empty tensor name": (edit_header(lambda header: header.__setitem__("", header.pop(BIAS))),
                          "empty name"),
    "lone surrogate name": (
        lambda file_bytes: join_file_raw(
            *_renamed(file_bytes, BIAS, "bad\\ud800")), "not valid Unicode"),
    "trailing garbage": (lambda file_bytes: restamp(file_bytes + b"\0" * 8),
                         "8 bytes of trailing data"),
    "trailing garbage, unstamped": (lambda file_bytes: file_bytes + b"\0" * 8, "checksum"),
    "truncated data": (lambda file_bytes: restamp(file_bytes[:-4]), "outside the"),
    "truncated data, unstamped": (lambda file_bytes: file_bytes[:-4], "checksum"),
}


def _renamed(file_bytes, old_name, escaped_new_name):
    header, data = split_file(file_bytes)
    entry = header.pop(old_name)
    header_text = (json.dumps(header, separators=(",", ":"))[:-1]
                   + f', "{escaped_new_name}": {json.dumps(entry)}}}')
    return header_text.encode("ascii"), data


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_file_raises_checkpoint_error_naming_file_and_problem(valid_file, corruption):
    corrupt, message = CORRUPTIONS[corruption]
    valid_file.write_bytes(corrupt(valid_file.read_bytes()))
    if message is None:  # a value holding an escaped marker: still one checksum, still valid
        assert read_checkpoint(valid_file).metadata["another"].startswith('","checksum"')
        return
    with pytest.raises(CheckpointError, match=message) as raised:
        read_checkpoint(valid_file)
    assert str(valid_file) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_file_and_directory_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.ckpt")
    with pytest.raises(CheckpointError, match="is a directory"):
        read_checkpoint(tmp_path)


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    # In a child with a timeout: a reader that blocks on the FIFO must fail the test, not hang it.
    script = ("import sys\nfrom tflite_transfer.runtime.checkpoint import read_checkpoint\n"
              "from tflite_transfer.runtime.errors import CheckpointError\n"
              "try:\n    read_checkpoint(sys.argv[1])\nexcept CheckpointError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", script, str(fifo)], capture_output=True, stdin=subprocess.DEVNULL,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "is a FIFO (named pipe); pass a regular file" in result.stdout


def test_device_is_refused():
    with pytest.raises(CheckpointError, match="is a device"):
        read_checkpoint("/dev/zero")


@pytest.mark.parametrize("path, message", [
    ("bad\0name.ckpt", "NUL byte"), ("", "empty"), (7, "got int 7"), (None, "got NoneType"),
])
def test_unusable_paths_are_refused(path, message):
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)
    with pytest.raises(InvalidInputError, match=message):
        write_checkpoint(path, small_tensors(), MODEL_FINGERPRINT)


def test_unreadable_file_is_refused(tmp_path):
    """Root reads any file, so (as in CI) the read runs in a forked child that dropped to user
    nobody (the child has every module loaded already, so it needs no file of the venv)."""
    import tflite_transfer.runtime.checkpoint_reader  # noqa: F401 (loaded before the fork)

    os.chmod(tmp_path, 0o755)
    path = tmp_path / "secret.ckpt"
    write_checkpoint(path, small_tensors(), MODEL_FINGERPRINT)
    os.chmod(path, 0)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                read_checkpoint(path)
                message = "accepted"
            except CheckpointError as error:
                message = str(error)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(child, 0)
    assert "is not readable (permission denied)" in message


def test_sparse_file_declaring_a_huge_tensor_is_refused_before_allocation(tmp_path):
    """512 MiB declared, a 512 MiB sparse file: the checksum is checked (streamed) before numpy
    allocates anything; peak memory stays far below the declared size."""
    path = tmp_path / "sparse.ckpt"
    header = {"__metadata__": {**OUR_METADATA, "checksum": "1" * 64},
              "w": {"dtype": "U8", "shape": [2**29], "data_offsets": [0, 2**29]}}
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as sparse:
        sparse.write(struct.pack("<Q", len(header_bytes)) + header_bytes)
        sparse.truncate(8 + len(header_bytes) + 2**29)
    script = ("import sys\nfrom tflite_transfer.runtime.checkpoint import read_checkpoint\n"
              "from tflite_transfer.runtime.errors import CheckpointError\n"
              "try:\n    read_checkpoint(sys.argv[1])\nexcept CheckpointError as e:\n    print(e)\n"
              # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking
              # pytest process (hundreds of MB once TensorFlow is loaded).
              "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, stdin=subprocess.DEVNULL,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    message, peak_kib = result.stdout.strip().splitlines()[-2:]
    assert "checksum does not match" in message, result.stdout
    assert int(peak_kib) < 300 * 1024  # the interpreter + numpy, not the declared 512 MiB


def test_duplicate_among_many_keys_is_found_in_linear_time(tmp_path):
    """100k keys and one duplicate at the end: refused at once (listing duplicates with
    list.count per key was quadratic: minutes for such a header)."""
    path = tmp_path / "many.ckpt"
    entries = ",".join(f'"t{index}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}' for index in range(100_000))
    header_text = ('{"__metadata__":{"format":"tflite-transfer-checkpoint","format_version":"2",'
                   f'"model_fingerprint":"{MODEL_FINGERPRINT}",{CHECKSUM_FIELD}}},{entries},'
                   '"t5":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}')
    header_bytes = header_text.encode() + b" " * (-len(header_text) % 8)
    path.write_bytes(restamp(struct.pack("<Q", len(header_bytes)) + header_bytes))
    with pytest.raises(CheckpointError, match="duplicate key 't5'"):
        read_checkpoint(path)
    head, _, tail = header_bytes.rpartition(b'"t5":')
    path.write_bytes(restamp(struct.pack("<Q", len(header_bytes)) + head + b'"u5":' + tail))
    assert len(read_checkpoint(path).tensors) == 100_001


def test_truncation_at_every_byte_raises_checkpoint_error(valid_file):
    file_bytes = valid_file.read_bytes()
    for length in range(len(file_bytes)):
        valid_file.write_bytes(file_bytes[:length])
        with pytest.raises(CheckpointError):  # any other exception type fails the test
            read_checkpoint(valid_file)


def test_every_single_bit_flip_is_refused(valid_file):
    """All 8 x size flips of a small checkpoint: each is a CheckpointError (never accepted,
    never another exception)."""
    file_bytes = valid_file.read_bytes()
    flipped = bytearray(file_bytes)
    outcomes = {}
    for position in range(len(file_bytes)):
        for bit in range(8):
            flipped[position] = file_bytes[position] ^ (1 << bit)
            valid_file.write_bytes(flipped)
            with pytest.raises(CheckpointError) as raised:
                read_checkpoint(valid_file)
            kind = str(raised.value).split(": ", 1)[-1][:30]
            outcomes[kind] = outcomes.get(kind, 0) + 1
        flipped[position] = file_bytes[position]
    assert sum(outcomes.values()) == 8 * len(file_bytes)


@settings(deadline=None, max_examples=300)
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                      max_size=4),
       insert=st.booleans())
def test_random_byte_edits_never_raise_anything_but_checkpoint_error(edits, insert):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "fuzzed.ckpt")
        write_checkpoint(path, small_tensors(), MODEL_FINGERPRINT)
        with open(path, "rb") as checkpoint_file:
            file_bytes = bytearray(checkpoint_file.read())
        for position, value in edits:
            position %= len(file_bytes)
            if insert:
                file_bytes.insert(position, value)
            else:
                file_bytes[position] = value
        with open(path, "wb") as checkpoint_file:
            checkpoint_file.write(file_bytes)
        try:
            restored = read_checkpoint(path)
        except CheckpointError:
            return
    # The checksum refuses every real change; only an edit writing the same byte is accepted.
    assert isinstance(restored, Checkpoint) and not insert
    assert_same_tensors(restored.tensors, small_tensors())


# --- atomic write --------------------------------------------------------------------------------

@pytest.fixture
def previous_checkpoint(tmp_path):
    path = tmp_path / "model.ckpt"
    write_checkpoint(path, small_tensors(), MODEL_FINGERPRINT)
    return path, path.read_bytes()


def new_tensors():
    return {name: np.full_like(array, 3) for name, array in small_tensors().items()}


def assert_previous_intact(previous_checkpoint):
    path, previous_bytes = previous_checkpoint
    assert path.read_bytes() == previous_bytes
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    assert_same_tensors(read_checkpoint(path).tensors, small_tensors())


def test_crash_at_replace_keeps_previous_checkpoint(previous_checkpoint, monkeypatch):
    def failing_replace(source, target):
        raise OSError(errno.EIO, "simulated I/O error")
    monkeypatch.setattr(checkpoint.os, "replace", failing_replace)
    with pytest.raises(CheckpointError, match="simulated I/O error.*previous file"):
        write_checkpoint(previous_checkpoint[0], new_tensors(), MODEL_FINGERPRINT)
    assert_previous_intact(previous_checkpoint)


def test_interrupt_before_replace_keeps_previous_checkpoint(previous_checkpoint, monkeypatch):
    def interrupted_fsync(file_descriptor):
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(previous_checkpoint[0], new_tensors(), MODEL_FINGERPRINT)
    assert_previous_intact(previous_checkpoint)


def test_disk_full_mid_write_keeps_previous_checkpoint(previous_checkpoint, monkeypatch):
    real_fdopen = os.fdopen

    class FileThatFillsUp:
        def __init__(self, real_file):
            self.real_file, self.writes = real_file, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.real_file.close()

        def write(self, data):
            self.writes += 1
            if self.writes == 3:  # after the header, inside the tensor data
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.real_file.write(data)

    def fdopen(descriptor, mode="r", *args, **kwargs):
        opened = real_fdopen(descriptor, mode, *args, **kwargs)
        return FileThatFillsUp(opened) if "w" in mode else opened
    monkeypatch.setattr(checkpoint.os, "fdopen", fdopen)
    with pytest.raises(CheckpointError, match="No space left on device"):
        write_checkpoint(previous_checkpoint[0], new_tensors(), MODEL_FINGERPRINT)
    assert_previous_intact(previous_checkpoint)


def test_temporary_file_is_in_target_directory(previous_checkpoint, monkeypatch):
    real_replace, sources = os.replace, []

    def recording_replace(source, target):
        sources.append(source)
        real_replace(source, target)
    monkeypatch.setattr(checkpoint.os, "replace", recording_replace)
    path = previous_checkpoint[0]
    write_checkpoint(path, new_tensors(), MODEL_FINGERPRINT)
    assert [os.path.dirname(source) for source in sources] == [str(path.parent)]
    assert_same_tensors(read_checkpoint(path).tensors, new_tensors())
    assert os.listdir(path.parent) == [path.name]


def test_overwrite_keeps_file_permissions(previous_checkpoint):
    path = previous_checkpoint[0]
    os.chmod(path, 0o640)
    write_checkpoint(path, new_tensors(), MODEL_FINGERPRINT)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_write_into_missing_directory_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        write_checkpoint(tmp_path / "absent" / "model.ckpt", small_tensors(), MODEL_FINGERPRINT)
    assert os.listdir(tmp_path) == []


# --- compatibility -------------------------------------------------------------------------------

def model_variables():
    return {name: (array.shape, array.dtype) for name, array in small_tensors().items()}


def test_compatible_checkpoint_passes_and_is_unchanged(valid_file):
    restored = read_checkpoint(valid_file)
    check_compatible(restored, model_variables(), MODEL_FINGERPRINT, valid_file)
    assert_same_tensors(restored.tensors, small_tensors())


def test_checkpoint_of_another_model_is_refused(valid_file):
    with pytest.raises(CheckpointError) as raised:
        check_compatible(read_checkpoint(valid_file), model_variables(), OTHER_FINGERPRINT,
                         valid_file)
    assert str(raised.value).startswith(
        f"checkpoint {valid_file} was written by another model (fingerprint "
        f"{MODEL_FINGERPRINT[:12]}… vs {OTHER_FINGERPRINT[:12]}…)")


def test_missing_and_unexpected_variables_are_listed(valid_file):
    expected = model_variables()
    del expected[STEP]
    expected["optimizer/adam/m"] = ((3, 4), np.dtype(np.float32))
    with pytest.raises(CheckpointError, match=(
            r"missing 1 tensor: 'optimizer/adam/m'; unexpected 1 tensor: 'optimizer/step'")):
        check_compatible(read_checkpoint(valid_file), expected, MODEL_FINGERPRINT)


@pytest.mark.parametrize("name, variable, message", [
    (KERNEL, ((4, 3), np.float32),
     r"'head/dense/kernel' is \[3, 4\] float32 in the checkpoint but \[4, 3\] float32"),
    (STEP, ((), np.int32), r"'optimizer/step' is \[\] int64 in the checkpoint but \[\] int32"),
    (BIAS, ((3,), np.dtype(">f4")), None),  # byte order is not a mismatch
])
def test_shape_and_dtype_mismatches_name_the_tensor(valid_file, name, variable, message):
    expected = {**model_variables(), name: variable}
    if message is None:
        check_compatible(read_checkpoint(valid_file), expected, MODEL_FINGERPRINT)
        return
    with pytest.raises(CheckpointError, match=message):
        check_compatible(read_checkpoint(valid_file), expected, MODEL_FINGERPRINT)


# --- read for a model: the header checked before the data -----------------------------------------

def expectation(fingerprint=MODEL_FINGERPRINT, **changes):
    return checkpoint.Expectation(fingerprint, {**model_variables(), **changes})


def test_read_for_the_model_returns_the_tensors(valid_file):
    assert_same_tensors(read_checkpoint(valid_file, expected=expectation()).tensors, small_tensors())
    assert expectation().data_bytes == sum(array.nbytes for array in small_tensors().values())


def sparse_checkpoint(path, declared_shape, fingerprint=MODEL_FINGERPRINT):
    """small_tensors() with the kernel declared as `declared_shape`: a sparse file with a valid
    header layout whose checksum field holds zeros (never checked when the size is wrong)."""
    tensors = small_tensors()
    kernel_bytes = int(np.prod(declared_shape)) * 4
    header = {"__metadata__": {"format": FORMAT_NAME, "format_version": "2", "model_fingerprint": fingerprint,
                               "checksum": "0" * 64},
              KERNEL: {"dtype": "F32", "shape": list(declared_shape), "data_offsets": [0, kernel_bytes]},
              STEP: {"dtype": "I64", "shape": [], "data_offsets": [kernel_bytes, kernel_bytes + 8]},
              BIAS: {"dtype": "F32", "shape": [3], "data_offsets": [kernel_bytes + 8, kernel_bytes + 20]}}
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as sparse:
        sparse.write(struct.pack("<Q", len(header_bytes)) + header_bytes)
        sparse.seek(8 + len(header_bytes) + kernel_bytes)
        sparse.write(tensors[STEP].tobytes() + tensors[BIAS].tobytes())
    return path


@pytest.mark.parametrize("fingerprint, message", [
    (MODEL_FINGERPRINT, r"does not fit the model: 'head/dense/kernel' is \[3, 4, 1048576\] float32 in the "
                        r"checkpoint but \[3, 4\] float32 in the model"),
    (OTHER_FINGERPRINT, "was written by another model"),
])
def test_a_huge_file_is_refused_from_its_header_without_hashing_its_data(tmp_path, monkeypatch, fingerprint,
                                                                         message):
    """A 48 MiB kernel declared in a sparse file: the header alone says why it does not fit;
    the data is neither hashed nor read (a valid-checksum 1 GiB file took 27 s and 1 GiB)."""
    from tflite_transfer.runtime import checkpoint_reader

    path = sparse_checkpoint(tmp_path / "huge.ckpt", (3, 4, 2**20), fingerprint)
    hashed = []
    monkeypatch.setattr(checkpoint_reader, "_file_checksum", lambda *args: hashed.append(args))
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path, expected=expectation())
    assert hashed == []


def test_a_file_of_the_models_size_is_hashed_before_its_header_is_trusted(valid_file):
    """A damaged header in a file of the right size is refused by the checksum, before any
    check against the model reads it (here a shape digit changed: 3 -> 4)."""
    data = bytearray(valid_file.read_bytes())
    shape_at = data.index(b'"shape":[3,4]')
    data[shape_at + len(b'"shape":[')] = ord("4")
    valid_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum does not match"):
        read_checkpoint(valid_file, expected=expectation())


@pytest.mark.parametrize("changes, message", [
    ({KERNEL: ((4, 3), np.float32)}, r"'head/dense/kernel' is \[3, 4\] float32 in the checkpoint but \[4, 3\]"),
    ({STEP: ((), np.float64)}, r"'optimizer/step' is \[\] int64 in the checkpoint but \[\] float64"),
])
def test_same_size_but_other_shapes_or_dtypes_are_refused_before_reading(valid_file, monkeypatch, changes,
                                                                          message):
    from tflite_transfer.runtime import checkpoint_reader

    monkeypatch.setattr(checkpoint_reader, "_read_into", lambda *args: pytest.fail("tensor data read"))
    monkeypatch.setattr(checkpoint_reader, "_read_exactly", _real_read_exactly)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(valid_file, expected=expectation(**changes))
    with pytest.raises(CheckpointError, match="written by another model"):
        read_checkpoint(valid_file, expected=expectation(OTHER_FINGERPRINT))


def _real_read_exactly(path, handle, size):  # the header's read, without the patched _read_into
    data = handle.read(size)
    assert len(data) == size
    return data


def test_a_truncated_file_read_for_the_model_names_the_truncation(valid_file):
    valid_file.write_bytes(valid_file.read_bytes()[:-3])
    with pytest.raises(CheckpointError, match="outside the .*-byte data section \\(truncated file\\?\\)"):
        read_checkpoint(valid_file, expected=expectation())


# --- fingerprint ---------------------------------------------------------------------------------

def test_fingerprint_is_length_prefixed_sha256():
    reference = hashlib.sha256()
    for part in [b"model", "h\u00e9ad".encode("utf-8")]:
        reference.update(len(part).to_bytes(8, "little") + part)
    assert fingerprint([b"model", "h\u00e9ad"]) == reference.hexdigest()
    assert fingerprint([bytearray(b"model"), memoryview(b"h\xc3\xa9ad")]) == reference.hexdigest()
    assert fingerprint(["ab", "c"]) != fingerprint(["a", "bc"])
    assert fingerprint([]) == hashlib.sha256().hexdigest()


@pytest.mark.parametrize("parts", ["model", b"model", [b"model", 3]])
def test_fingerprint_rejects_non_part_inputs(parts):
    with pytest.raises(InvalidInputError):
        fingerprint(parts)


# --- runtime import contract ---------------------------------------------------------------------

def test_imports_and_round_trips_without_tensorflow(tmp_path):
    script = textwrap.dedent(f"""
        import importlib.abc, sys

        class BlockHeavyPackages(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "safetensors"):
                    raise ImportError(f"{{name}} is blocked: the runtime must not need it")
                return None

        sys.meta_path.insert(0, BlockHeavyPackages())
        import numpy as np
        from tflite_transfer.runtime import checkpoint
        path = {str(tmp_path / "no_tf.ckpt")!r}
        fingerprint = checkpoint.fingerprint([b"model"])
        checkpoint.write_checkpoint(path, {{"w": np.ones((2, 3), np.float32)}}, fingerprint)
        restored = checkpoint.read_checkpoint(path)
        checkpoint.check_compatible(restored, {{"w": ((2, 3), np.float32)}}, fingerprint)
        assert not any(name.split(".")[0] == "tensorflow" for name in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, stdin=subprocess.DEVNULL, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
