"""TransferModel: the lifecycle, input validation, checkpoints and imprinting."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tflite_transfer.runtime import TransferModel, contract
from tflite_transfer.runtime.checkpoint import read_checkpoint, write_checkpoint
from tflite_transfer.runtime.errors import CheckpointError, InvalidInputError, UnsupportedModelError
from tests.helpers import colour_images


def test_open_exposes_the_contract(tiny_model_path, tiny_fused):
    model = TransferModel.open(tiny_model_path)
    assert model.num_classes == 3
    assert model.image_shape == (16, 12, 3) and model.image_dtype == np.uint8
    assert model.bottleneck_shape == (7,)
    assert set(model.state_names) == set(tiny_fused.head.initial_state)
    assert model.optimizer["name"] == "sgd" and model.labels == []
    assert model.interpreter_name == "ai_edge_litert"


def test_refuses_a_plain_tflite_file(tiny_classifier_path):
    with pytest.raises(UnsupportedModelError, match="not a tflite-transfer model"):
        TransferModel.open(tiny_classifier_path)


def test_refuses_a_model_missing_a_signature(tiny_fused, tmp_path):
    from tflite_transfer.compiler.flatbuffer import model_io

    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    model.signatureDefs = [s for s in model.signatureDefs if s.signatureKey != b"restore"]
    path = tmp_path / "no_restore.tflite"
    path.write_bytes(contract.stamp_digest(model_io.write_model_bytes(model)))  # edited on purpose
    with pytest.raises(UnsupportedModelError, match="missing signature.*restore"):
        TransferModel.open(str(path))


def test_refuses_junk(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"not a model at all")
    with pytest.raises(InvalidInputError, match="not a TFLite model"):
        TransferModel.open(str(path))
    with pytest.raises(InvalidInputError, match="does not exist"):
        TransferModel.open(str(tmp_path / "absent.tflite"))


def test_lifecycle_learns_a_separable_task(tiny_model_path):
    model = TransferModel.open(tiny_model_path)
    model.set_learning_rate(1.0)  # the tiny base's bottlenecks are small: |x|^2 ~ 0.2
    train_images, train_labels = colour_images(8, seed=0)
    test_images, test_labels = colour_images(10, seed=1)
    for image, label in zip(train_images, train_labels):
        model.add_sample(image, int(label))
    assert model.num_samples == 24
    before = np.mean(model.predict(test_images).argmax(1) == test_labels)
    losses = model.fit(epochs=30, batch_size=8, seed=0, progress=False, imprint=False)  # training alone
    after = np.mean(model.predict(test_images).argmax(1) == test_labels)
    assert losses[-1] < 0.5 * losses[0]
    assert after >= 0.9 > before + 0.2  # chance is 1/3
    assert model.steps == 30 * 3


def test_train_step_on_images(tiny_model_path):
    model = TransferModel.open(tiny_model_path)
    model.set_learning_rate(1.0)
    images, labels = colour_images(4, seed=2)
    losses = [model.train_step(images, labels) for _ in range(15)]
    assert losses[-1] < losses[0]


def test_set_learning_rate_and_reset(tiny_model_path, tiny_fused):
    model = TransferModel.open(tiny_model_path)
    images, labels = colour_images(2, seed=3)
    model.set_learning_rate(0.25)
    model.train_step(images, labels)
    after = model.get_state()
    assert after["learning_rate"] == 0.25 and after["step"] == 1
    model.reset()
    for name, value in model.get_state().items():
        np.testing.assert_array_equal(value, tiny_fused.head.initial_state[name])


@pytest.mark.parametrize("call,message", [
    (lambda m: m.predict(np.zeros((2, 12, 16, 3), np.uint8)), r"shape \[2, 12, 16, 3\] does not fit"),
    (lambda m: m.predict(np.zeros((2, 16, 12, 3), np.float32)), "dtype float32, the model takes uint8"),
    (lambda m: m.add_sample(np.zeros((16, 12, 3), np.uint8), 3), r"3 is outside \[0, 3\)"),
    (lambda m: m.add_sample(np.zeros((16, 12, 3), np.uint8), -1), r"-1 is outside"),
    (lambda m: m.train_step(np.zeros((2, 16, 12, 3), np.uint8), [0.5, 1.0]), "integer class ids"),
    (lambda m: m.train_bottlenecks(np.full((1, 7), np.nan, np.float32), [0]), "bottleneck: contains NaN"),
    (lambda m: m.fit(), "no samples cached"),
    (lambda m: m.set_learning_rate(float("nan")), "learning rate must be finite, > 0"),
])
def test_bad_inputs_are_refused_before_the_interpreter(tiny_model_path, call, message):
    model = TransferModel.open(tiny_model_path)
    before = model.get_state()
    with pytest.raises(InvalidInputError, match=message):
        call(model)
    for name, value in model.get_state().items():
        np.testing.assert_array_equal(value, before[name])


def test_float_images_outside_the_pixel_range_or_not_finite(small_mobilenet_path):
    import dataclasses

    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler import pipeline

    base = sources.load_base(sources.BaseOptions(base=small_mobilenet_path), lambda m: None)
    base = dataclasses.replace(base, image_range=(0.0, 255.0))  # as the embedded base records it
    result = pipeline.compile_from_base(base, pipeline.HeadOptions(), verify_steps=0, progress=lambda m: None)
    assert result.metadata.image_range == (0.0, 255.0)
    model = TransferModel.open(result.model_bytes)
    image = np.full((96, 96, 3), 100.0, np.float32)
    model.predict(image)
    with pytest.raises(InvalidInputError, match=r"values span \[100, 300\] but the model takes pixels in \[0, 255\]"):
        model.predict(np.concatenate([image[None], image[None] * 3]))
    image[0, 0, 0] = np.inf
    with pytest.raises(InvalidInputError, match="NaN or Inf"):
        model.add_sample(image, 0)


def test_checkpoint_round_trip_is_bit_exact(tiny_model_path, tmp_path):
    model = TransferModel.open(tiny_model_path)
    images, labels = colour_images(3, seed=4)
    model.train_step(images, labels)
    path = tmp_path / "me.ckpt"
    model.save_checkpoint(path)
    saved = model.get_state()
    for _ in range(3):
        model.train_step(images, labels)
    fresh = TransferModel.open(tiny_model_path)
    for restored in (model, fresh):
        restored.restore_checkpoint(path)
        for name, value in restored.get_state().items():
            np.testing.assert_array_equal(value, saved[name], err_msg=name)
    assert fresh.train_step(images, labels) == model.train_step(images, labels)


def _state_unchanged(model, before):
    for name, value in model.get_state().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_checkpoint_from_another_model(tiny_model_path, other_model_path, tmp_path):
    other = TransferModel.open(other_model_path)
    other.save_checkpoint(tmp_path / "other.ckpt")
    model = TransferModel.open(tiny_model_path)
    before = model.get_state()
    with pytest.raises(CheckpointError, match="written by another model"):
        model.restore_checkpoint(tmp_path / "other.ckpt")
    _state_unchanged(model, before)


@pytest.mark.parametrize("damage", ["truncate", "header", "shape", "dtype", "missing", "nan"])
def test_bad_checkpoints_change_nothing(tiny_model_path, tmp_path, damage):
    model = TransferModel.open(tiny_model_path)
    path = tmp_path / "bad.ckpt"
    model.save_checkpoint(path)
    state = model.get_state()
    fingerprint = model.metadata.fingerprint
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "header":
        data = bytearray(path.read_bytes())
        data[10:14] = b"\xff\xfe{{"
        path.write_bytes(bytes(data))
    elif damage == "shape":
        write_checkpoint(path, dict(state, dense_0_kernel=np.zeros((7, 3), np.float32)), fingerprint)
    elif damage == "dtype":
        write_checkpoint(path, dict(state, step=np.array(0, np.int64)), fingerprint)
    elif damage == "missing":
        write_checkpoint(path, {k: v for k, v in state.items() if k != "dense_0_bias"}, fingerprint)
    else:
        write_checkpoint(path, dict(state, dense_0_bias=np.full(3, np.nan, np.float32)), fingerprint)
    images, labels = colour_images(2, seed=5)
    model.train_step(images, labels)
    before = model.get_state()
    with pytest.raises(CheckpointError):
        model.restore_checkpoint(path)
    _state_unchanged(model, before)


def test_a_huge_valid_checkpoint_is_refused_from_its_header(tiny_model_path, tmp_path, monkeypatch):
    """The model's own names and fingerprint, a kernel declared 64 MiB, a valid checksum (a
    sparse file): refused from the header, its data never hashed nor read, nothing changed."""
    import json
    import struct

    from tflite_transfer.runtime import checkpoint_reader

    model = TransferModel.open(tiny_model_path)
    state = model.get_state()
    kernel = np.zeros((3, 7 * 2**21), np.float32)  # 64 MiB of zeros: a sparse file below
    header = {"__metadata__": {"format": "tflite-transfer-checkpoint", "format_version": "2",
                               "model_fingerprint": model.metadata.fingerprint, "checksum": "0" * 64}}
    offset, layout = 0, []
    for name, value in sorted(dict(state, dense_0_kernel=kernel).items()):
        header[name] = {"dtype": {"float32": "F32", "int32": "I32"}[str(value.dtype)], "shape": list(value.shape),
                        "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
        layout.append(value)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    path = tmp_path / "huge.ckpt"
    with open(path, "wb") as sparse:
        sparse.write(struct.pack("<Q", len(header_bytes)) + header_bytes)
        for value in layout:
            if value is kernel:
                sparse.seek(value.nbytes, os.SEEK_CUR)
            else:
                sparse.write(value.tobytes())
    with open(path, "rb") as whole:  # a valid checksum, streamed over the sparse file
        checksum = contract.sha256_with_hex_zeroed(iter(lambda: whole.read(1 << 20), b""),
                                                   8 + header_bytes.index(b"0" * 64))
    with open(path, "r+b") as patch:
        patch.seek(8 + header_bytes.index(b"0" * 64))
        patch.write(checksum.encode())
    assert read_checkpoint(path).tensors["dense_0_kernel"].shape == kernel.shape  # the file is valid
    monkeypatch.setattr(checkpoint_reader, "_file_checksum", lambda *args: pytest.fail("data hashed"))
    with pytest.raises(CheckpointError, match=r"does not fit the model: 'dense_0_kernel' is \[3, 14680064\] "
                                              r"float32 in the checkpoint but \[3, 7\] float32"):
        model.restore_checkpoint(path)
    _state_unchanged(model, state)


def test_crash_mid_save_keeps_the_old_checkpoint(tiny_model_path, tmp_path, monkeypatch):
    model = TransferModel.open(tiny_model_path)
    path = tmp_path / "me.ckpt"
    model.save_checkpoint(path)
    old = path.read_bytes()
    images, labels = colour_images(2, seed=6)
    model.train_step(images, labels)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises((CheckpointError, OSError)):
        model.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["me.ckpt"]
    assert read_checkpoint(path).tensors["step"] == 0


def test_imprinting_gives_a_useful_model_before_any_step(tiny_model_path):
    model = TransferModel.open(tiny_model_path)
    train_images, train_labels = colour_images(5, seed=7)
    test_images, test_labels = colour_images(20, seed=8)
    model.add_samples(train_images, train_labels)
    model.imprint()
    assert model.steps == 0
    assert model.get_state()["step"].shape == (1,)
    assert np.mean(model.predict(test_images).argmax(1) == test_labels) >= 0.9
    # Training goes on from the imprinted weights.
    losses = model.fit(epochs=5, batch_size=5, progress=False)
    assert losses[-1] <= losses[0] + 1e-6


def test_imprinting_with_a_missing_class(tiny_model_path):
    model = TransferModel.open(tiny_model_path)
    images, labels = colour_images(3, seed=9)
    keep = labels != 2
    model.add_samples(images[keep], labels[keep])
    model.imprint()
    predicted = model.predict(images).argmax(1)
    assert 2 not in predicted
    assert np.mean(predicted[keep] == labels[keep]) == 1.0


def test_imprint_needs_a_softmax_head(small_model_path):
    model = TransferModel.open(small_model_path)  # an MLP head
    model.add_bottlenecks(np.ones((2, 1280), np.float32), [0, 1])
    with pytest.raises(UnsupportedModelError, match="single-layer softmax head"):
        model.imprint()


def test_class_labels_and_a_regression_head(tiny_classifier_path, tiny_pool_name):
    from tests.helpers import compile_model

    named = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, labels=("cat", "dog", "fox"))
    assert TransferModel.open(named.model_bytes).labels == ["cat", "dog", "fox"]
    regression = TransferModel.open(compile_model(tiny_classifier_path, tiny_pool_name, num_classes=2,
                                                  loss="mse", learning_rate=0.5).model_bytes)
    images, colour = colour_images(6, seed=10)
    targets = np.stack([colour == 0, colour == 1], axis=1).astype(np.float32)
    regression.add_samples(images, targets)
    losses = regression.fit(epochs=40, batch_size=6, progress=False)
    assert losses[-1] < 0.5 * losses[0]
    assert regression.predict(images).shape == (18, 2)
    with pytest.raises(InvalidInputError, match=r"float targets \[1, 2\]"):
        regression.add_sample(images[0], 1)
