"""runtime/interpreter.py: opening models (digest before parsing, refused files, metadata
damage), the signature contract, and wrapped interpreter failures. Includes a bounded fuzz of
bit flips and truncations of a small compiled model (the long campaign: benchmarks/fuzz)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks.fuzz.subjects import rewrite_model
from tflite_transfer.runtime import TransferModel, contract
from tflite_transfer.runtime.errors import (InvalidInputError, TransferError, UnsupportedModelError,
                                            VerificationError)
from tflite_transfer.runtime.interpreter import Signature, open_model


@pytest.fixture(scope="module")
def stamped_bytes(tiny_fused) -> bytes:
    """The tiny model as contract version 2 with its digest."""
    return rewrite_model(tiny_fused.model_bytes)


@pytest.fixture
def stamped_path(stamped_bytes, tmp_path) -> str:
    path = tmp_path / "stamped.tflite"
    path.write_bytes(stamped_bytes)
    return str(path)


def test_stamped_model_opens_with_typed_metadata(stamped_path):
    model = TransferModel.open(stamped_path)
    assert isinstance(model.metadata, contract.ModelMetadata)
    assert model.metadata.contract_version == 2 and contract.digest_matches(open(stamped_path, "rb").read())
    assert {entry.role for entry in model.metadata.state} == {"kernel", "bias", "step", "learning_rate"}


def test_digest_mismatch_is_refused_before_the_interpreter_unless_skipped(stamped_bytes, tmp_path):
    data = bytearray(stamped_bytes)
    # A byte of a weight buffer, far from the metadata: the FlatBuffer stays well-formed.
    position = len(data) // 3
    data[position] ^= 0x01
    path = tmp_path / "flipped.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"flipped.tflite: the file does not match its "
                                                r"model_digest .*verify_digest=False"):
        TransferModel.open(path)
    try:  # the app verified the file elsewhere: the check is skipped (this flip may still run)
        TransferModel.open(path, verify_digest=False)
    except TransferError:
        pass


def test_version_2_without_digest_is_refused(tiny_fused):
    unstamped = rewrite_model(tiny_fused.model_bytes)
    unstamped = unstamped.replace(contract.find_digest(unstamped)[1].encode(), b"g" * 64)
    with pytest.raises(UnsupportedModelError, match="no model_digest"):
        TransferModel.open(unstamped)


@pytest.mark.parametrize("make, error, message", [
    (lambda tmp: tmp, InvalidInputError, "is a directory"),
    (lambda tmp: (os.mkfifo(tmp / "fifo"), tmp / "fifo")[1], InvalidInputError, "is a FIFO"),
    (lambda tmp: "/dev/zero", InvalidInputError, "is a device"),
    (lambda tmp: tmp / "absent.tflite", InvalidInputError, "does not exist"),
    (lambda tmp: str(tmp / "a\0b.tflite"), InvalidInputError, "NUL byte"),
    (lambda tmp: 17, InvalidInputError, "got int 17"),
    (lambda tmp: None, InvalidInputError, "got NoneType"),
])
def test_unusable_model_paths(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        TransferModel.open(make(tmp_path))


def test_truncations_and_metadata_damage_are_project_errors(stamped_bytes):
    for length in (0, 4, 8, 100, len(stamped_bytes) // 2, len(stamped_bytes) - 1):
        with pytest.raises(TransferError):
            TransferModel.open(stamped_bytes[:length])
    metadata = stamped_bytes.index(b'"bottleneck_size":')
    damaged = bytearray(stamped_bytes)
    damaged[metadata + 1:metadata + 11] = b"xxxxxxxxxx"  # a required key renamed
    with pytest.raises(UnsupportedModelError, match="metadata is incomplete"):
        TransferModel.open(contract.stamp_digest(bytes(damaged)))


def with_metadata_values(model_bytes: bytes, **values) -> bytes:
    """The model with raw JSON values in its metadata record (absurd numbers included), its
    digest left as it was: opened with verify_digest=False, as an app that checked elsewhere."""
    from tflite_transfer.compiler.flatbuffer import model_io

    model = model_io.read_model_bytes(model_bytes)
    entry = next(m for m in model.metadata if m.name.decode() == contract.METADATA_KEY)
    record = json.loads(model_io.buffer_bytes(model, entry.buffer))
    record.update(values)
    model.buffers[entry.buffer] = model_io.make_buffer(json.dumps(record).encode())
    return model_io.write_model_bytes(model)


@pytest.mark.parametrize("key", ["bottleneck_size", "num_outputs", "image_batch", "train_batch"])
@pytest.mark.parametrize("value", [1e30, 10**30, float("inf"), 8, 2.5], ids=["1e30", "10**30", "inf", "8", "2.5"])
def test_metadata_numbers_must_be_the_models_tensor_sizes(stamped_bytes, key, value):
    """With the digest check off, sizes in the metadata that are not the model's (1e30 reached
    numpy as a raw ValueError/OverflowError) are one UnsupportedModelError line at open."""
    damaged = with_metadata_values(stamped_bytes, **{key: value})
    with pytest.raises(UnsupportedModelError) as raised:
        TransferModel.open(damaged, verify_digest=False)
    assert "\n" not in str(raised.value) and raised.value.__cause__ is None


def test_metadata_state_shapes_must_be_the_models(stamped_bytes):
    record = json.loads(contract.ModelMetadata.from_json(
        open_model(stamped_bytes).metadata.to_json()).to_json())
    kernel = next(entry for entry in record["state"] if entry["role"] == "kernel")
    kernel["shape"] = [kernel["shape"][0], 10**30]
    with pytest.raises(UnsupportedModelError, match=r"output 'dense_0_kernel' of signature 'save' as float32 "
                                                    r"\[3, 1000000000000000000000000000000\] but the model's "
                                                    r"tensor is float32 \[3, 7\]"):
        TransferModel.open(with_metadata_values(stamped_bytes, state=record["state"]), verify_digest=False)
    assert TransferModel.open(with_metadata_values(stamped_bytes), verify_digest=False).num_classes == 3


def test_interpreter_failures_name_the_signature_and_shapes(stamped_bytes):
    opened = open_model(stamped_bytes)
    with pytest.raises(UnsupportedModelError, match=r"signature 'train' failed on bottleneck "
                                                    r"float32\[2, 5\], label int32\[2\]: "):
        opened.signatures["train"](bottleneck=np.zeros((2, 5), np.float32), label=np.zeros(2, np.int32))
    assert isinstance(opened.signatures["train"], Signature)


def test_bit_flips_and_truncations_of_a_model_only_raise_project_errors(stamped_bytes):
    """A seeded sample of single-bit flips over the whole file and of truncations: every one
    is refused with a project error (the digest catches them before any parser), none is
    accepted. Runs in a child so a LiteRT abort fails this test instead of killing pytest."""
    script = f"""
import random, sys
sys.path[:0] = {sys.path!r}
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.errors import TransferError
data = open(sys.argv[1], 'rb').read()
rng = random.Random(10)
outcomes = {{}}
cases = [('flip', rng.randrange(len(data) * 8)) for _ in range(300)]
cases += [('truncate', rng.randrange(len(data))) for _ in range(40)]
for kind, where in cases:
    damaged = bytearray(data)
    if kind == 'flip':
        damaged[where // 8] ^= 1 << (where % 8)
    else:
        del damaged[where:]
    try:
        TransferModel.open(bytes(damaged))
        outcome = 'accepted'
    except TransferError as error:
        outcome = type(error).__name__
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
print(outcomes)
"""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fuzz-{os.getpid()}-{time.time_ns()}.tflite")
    with open(path, "wb") as handle:
        handle.write(stamped_bytes)
    try:
        result = subprocess.run([sys.executable, "-c", script, path], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=600)
    finally:
        os.unlink(path)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 (our own dict repr)
    assert sum(outcomes.values()) == 340 and "accepted" not in outcomes, outcomes
