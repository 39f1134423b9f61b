"""TransferModel on models of every contract version: a version 3 model with the example app's
names, a [0, 1] input and one-hot labels; version 2 (what the compiler writes without version
3's options) and version 1 models, and their checkpoints, as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import colour_images, compile_model
from tflite_transfer.runtime import TransferModel, contract
from tflite_transfer.runtime.errors import InvalidInputError

APP = {"names": "tf_example_app", "input_range": "0,1", "label_format": "one_hot"}


@pytest.fixture(scope="module")
def app_model_bytes(tiny_classifier_path, tiny_pool_name) -> bytes:
    return compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1, interface=APP).model_bytes


def _samples(count_per_class: int = 4):
    images, labels = colour_images(count_per_class, seed=5)
    return images.astype(np.float32) / 255.0, labels


def test_a_version_3_model_speaks_its_own_names(app_model_bytes):
    model = TransferModel.open(app_model_bytes)
    assert model.metadata.contract_version == 3
    assert model.names == contract.TensorNames("feature", "bottleneck", "label", "loss", "output")
    assert model.input_shape == (16, 12, 3) and model.input_dtype == np.float32  # the base takes uint8
    images, labels = _samples()
    assert model.predict(images).shape == (len(images), 3)
    with pytest.raises(InvalidInputError, match=r"^feature: values span \[0, 2\d\d\] but the model takes pixels in "
                                                r"\[0, 1\]$"):
        model.predict(images * 255.0)
    with pytest.raises(InvalidInputError, match=r"^feature: shape \[2, 12, 16, 3\] does not fit"):
        model.load(np.zeros((2, 12, 16, 3), np.float32))


@pytest.mark.parametrize("rows, message", [
    ([[0, np.nan, 1]], "^label: contains NaN or Inf$"),
    ([[1.5, -0.5, 0]], "^label: row 0 has -0.5 at class 1; one-hot and soft targets are >= 0$"),
    ([[1, 1, 0]], r"^label: row 0 sums to 2; one-hot and soft targets sum to 1 \(within 0.001\)$"),
    ([[0.2, 0.2]], r"^label: expected one-hot \(or soft\) float targets \[1, 3\], got float64 shape \[1, 2\]$"),
    ([3], r"^label: 3 is outside \[0, 3\)$"),
])
def test_one_hot_labels_are_checked_and_a_refusal_changes_nothing(app_model_bytes, rows, message):
    model = TransferModel.open(app_model_bytes)
    images, _ = _samples(1)
    with pytest.raises(InvalidInputError, match=message):
        model.add_samples(images[:1], np.asarray(rows))
    assert model.num_samples == 0


def test_class_ids_given_to_a_one_hot_model_are_encoded(app_model_bytes):
    by_ids, by_rows = TransferModel.open(app_model_bytes), TransferModel.open(app_model_bytes)
    images, labels = _samples()
    by_ids.add_samples(images, labels)
    by_rows.add_samples(images, np.eye(3, dtype=np.float32)[labels])
    by_ids.add_sample(images[0], int(labels[0]))
    by_rows.add_sample(images[0], np.eye(3, dtype=np.float32)[labels[0]])
    assert by_ids.fit(epochs=3, progress=False, seed=1) == by_rows.fit(epochs=3, progress=False, seed=1)


def test_soft_targets_train_and_imprint_weighs_by_them(app_model_bytes):
    model = TransferModel.open(app_model_bytes)
    images, labels = _samples(6)
    soft = np.full((len(labels), 3), 0.05, np.float32)
    soft[np.arange(len(labels)), labels] = 0.9
    model.add_samples(images, soft)
    model.imprint()
    bottlenecks = model.load(images).astype(np.float64)
    means = (soft.T @ bottlenecks) / soft.sum(axis=0)[:, None]  # the soft-weighted class means
    nearest = ((bottlenecks[:, None] - means[None]) ** 2).sum(-1).argmin(axis=1)
    np.testing.assert_array_equal(model.predict(images).argmax(axis=1), nearest)
    losses = model.fit(epochs=30, batch_size=6, progress=False)
    assert losses[-1] < losses[0] and np.isfinite(losses).all()


def test_a_checkpoint_moves_between_a_version_2_and_a_version_3_model(tiny_model_path, app_model_bytes, tmp_path):
    """Names, input range and label format change how an app calls a model, not its state."""
    version_2, version_3 = TransferModel.open(tiny_model_path), TransferModel.open(app_model_bytes)
    assert version_2.metadata.contract_version == 2 and version_2.names == contract.TensorNames()
    images, labels = colour_images(4, seed=6)
    version_2.add_samples(images, labels)
    version_2.fit(epochs=2, progress=False)
    version_2.save_checkpoint(tmp_path / "v2.ckpt")
    version_3.restore_checkpoint(tmp_path / "v2.ckpt")
    np.testing.assert_allclose(version_3.predict(images.astype(np.float32) / 255.0), version_2.predict(images),
                               rtol=1e-5, atol=1e-6)


def _as_version_1(model_bytes: bytes) -> bytes:
    """The model with its metadata as contract version 1 wrote it (no digest, state as a dict)."""
    from tflite_transfer.compiler.flatbuffer import graph, model_io

    model = model_io.read_model_bytes(model_bytes)
    metadata = contract.ModelMetadata.from_json(graph.get_metadata(model, contract.METADATA_KEY))
    record = json.loads(metadata.to_json())
    record["state"] = {e.name: {"shape": list(e.shape), "dtype": e.dtype} for e in metadata.state}
    for key in ("label", "model_digest", "image_batch", "train_batch"):
        record.pop(key)
    record.update(contract_version=1, signatures=list(contract.SIGNATURES))
    graph.set_metadata(model, contract.METADATA_KEY, json.dumps(record).encode())
    return model_io.write_model_bytes(model)


def test_a_version_1_model_and_its_checkpoint_still_work(tiny_fused, tmp_path):
    model = TransferModel.open(_as_version_1(tiny_fused.model_bytes))
    assert model.metadata.contract_version == 1 and model.names == contract.TensorNames()
    assert model.input_spec == contract.InputSpec("image", "uint8", (16, 12, 3))
    images, labels = colour_images(4, seed=7)
    model.add_samples(images, labels)
    losses = model.fit(epochs=5, progress=False)
    assert losses[-1] < losses[0]
    model.save_checkpoint(tmp_path / "v1.ckpt")
    before = model.predict(images)
    model.reset()
    model.restore_checkpoint(tmp_path / "v1.ckpt")
    np.testing.assert_array_equal(model.predict(images), before)
