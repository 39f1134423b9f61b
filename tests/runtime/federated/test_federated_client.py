"""The device side of a federation without Flower: what travels (kernels and biases by role),
validated updates that change nothing when refused, local rounds, held-out scoring checked
against the model's own `infer` signature, and the global checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import colour_images, compile_model
from tflite_transfer.runtime import TransferModel, contract
from tflite_transfer.runtime.checkpoint import read_checkpoint
from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated import head
from tflite_transfer.runtime.federated.client import FederatedClient, FitConfig
from tflite_transfer.runtime.federated.client_data import ClientData
from tflite_transfer.runtime.federated.global_model import GlobalModel


@pytest.fixture(scope="module")
def adam_model_path(tiny_classifier_path, tiny_pool_name, tmp_path_factory) -> str:
    result = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, optimizer="adam",
                           learning_rate=0.05)
    path = tmp_path_factory.mktemp("federated") / "tiny_adam.tflite"
    path.write_bytes(result.model_bytes)
    return str(path)


def client_data(model: TransferModel, seed: int, per_class: int = 12) -> ClientData:
    """Two thirds of the samples to train on, one third held out."""
    images, labels = colour_images(per_class, seed=seed)
    bottlenecks = model.load(images)
    cut = 2 * len(labels) // 3
    return ClientData(bottlenecks[:cut], labels[:cut], bottlenecks[cut:], labels[cut:])


def test_only_kernels_and_biases_travel(adam_model_path):
    model = TransferModel.open(adam_model_path)
    metadata = head.typed_metadata(model)
    weights = head.head_weights(model)
    roles = {entry.name: entry.role for entry in metadata.state}
    assert weights and {roles[name] for name in weights} == {contract.KERNEL, contract.BIAS}
    # Everything else (Adam's m and v slots, step, learning rate) stays on the device.
    assert set(roles) - set(weights) == {n for n, r in roles.items() if r not in (contract.KERNEL, contract.BIAS)}
    assert any(r == contract.SLOT for r in roles.values())
    state = model.get_state()
    for name, value in weights.items():
        np.testing.assert_array_equal(value, state[name])


@pytest.mark.parametrize("problem", ["missing", "slot", "shape", "dtype", "nan"])
def test_a_bad_update_is_refused_and_changes_nothing(adam_model_path, problem):
    model = TransferModel.open(adam_model_path)
    metadata = head.typed_metadata(model)
    model.add_bottlenecks(np.ones((4, 7), np.float32), [0, 1, 2, 0])
    model.fit(epochs=2, batch_size=2, progress=False)          # slots and step are non-trivial now
    before = model.get_state()
    weights = head.head_weights(model)
    kernel = next(e.name for e in metadata.state if e.role == contract.KERNEL)
    slot = next(e.name for e in metadata.state if e.role == contract.SLOT)
    if problem == "missing":
        del weights[kernel]
    elif problem == "slot":
        weights[slot] = before[slot]
    elif problem == "shape":
        weights[kernel] = weights[kernel][:, :-1]
    elif problem == "dtype":
        weights[kernel] = weights[kernel].astype(np.float64)
    else:
        weights[kernel] = np.full_like(weights[kernel], np.nan)
    with pytest.raises(InvalidInputError, match="federated parameter"):
        head.set_head_weights(model, weights)
    after = model.get_state()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_set_head_weights_keeps_slots_and_step(adam_model_path):
    model = TransferModel.open(adam_model_path)
    model.add_bottlenecks(np.ones((4, 7), np.float32), [0, 1, 2, 0])
    model.fit(epochs=2, batch_size=2, progress=False)
    before = model.get_state()
    new = {name: value + 1.0 for name, value in head.head_weights(model).items()}
    head.set_head_weights(model, new)
    after = model.get_state()
    for name in before:
        np.testing.assert_array_equal(after[name], new.get(name, before[name]))


def test_held_out_score_matches_the_infer_signature(tiny_model_path):
    """Scoring on cached bottlenecks (numpy) against `infer` on the images (the real graph)."""
    model = TransferModel.open(tiny_model_path)
    images, labels = colour_images(10, seed=3)
    model.add_samples(images, labels)
    model.fit(epochs=5, batch_size=8, progress=False)
    weights = head.head_weights(model)
    loss, accuracy = head.score(head.typed_metadata(model), weights, model.load(images), labels)
    probabilities = model.predict(images).astype(np.float64)
    reference_loss = float(-np.log(probabilities[np.arange(len(labels)), labels]).mean())
    assert loss == pytest.approx(reference_loss, rel=1e-5)
    assert accuracy == float(np.mean(probabilities.argmax(1) == labels))


def test_a_round_starts_from_the_federation_weights(tiny_model_path):
    """Local training before the round must not leak into it: same weights in, same weights out."""
    fresh = TransferModel.open(tiny_model_path)
    data = client_data(fresh, seed=0)
    used = TransferModel.open(tiny_model_path)
    used.add_bottlenecks(data.heldout_bottleneck, data.heldout_label)
    used.fit(epochs=3, batch_size=4, progress=False)
    start = {name: value * 0.5 for name, value in head.head_weights(fresh).items()}
    config = FitConfig(local_epochs=3, batch_size=4, seed=1, learning_rate=0.2)
    fingerprint = head.typed_metadata(fresh).fingerprint
    results = [FederatedClient(m, data).fit(start, fingerprint, config) for m in (fresh, used)]
    for name in start:
        np.testing.assert_array_equal(results[0].weights[name], results[1].weights[name])
        assert not np.array_equal(results[0].weights[name], start[name])
    assert results[0].num_examples == 24


def test_rounds_lower_the_held_out_loss(tiny_model_path):
    model = TransferModel.open(tiny_model_path)
    client = FederatedClient(model, client_data(model, seed=1))
    weights = head.head_weights(model)
    first = client.evaluate(weights, client.fingerprint)
    for _ in range(5):
        weights = client.fit(weights, client.fingerprint, FitConfig(5, 8, 0, 1.0)).weights
    last = client.evaluate(weights, client.fingerprint)
    assert last.loss < 0.8 * first.loss and last.accuracy > first.accuracy and last.num_examples == 12


def test_another_models_fingerprint_is_refused(tiny_model_path, other_model_path):
    model = TransferModel.open(tiny_model_path)
    client = FederatedClient(model, client_data(model, seed=2))
    other = head.typed_metadata(TransferModel.open(other_model_path)).fingerprint
    before = model.get_state()
    with pytest.raises(InvalidInputError, match="fingerprint .* install the federation's .tflite"):
        client.fit(head.head_weights(model), other, FitConfig())
    with pytest.raises(InvalidInputError, match="fingerprint"):
        client.evaluate(head.head_weights(model), other)
    for name, value in model.get_state().items():
        np.testing.assert_array_equal(value, before[name])


def test_client_data_round_trip_and_bad_files(tiny_model_path, tmp_path):
    data = client_data(TransferModel.open(tiny_model_path), seed=4)
    data.save(tmp_path / "samples.npz")
    loaded = ClientData.load(tmp_path / "samples.npz")
    np.testing.assert_array_equal(loaded.bottleneck, data.bottleneck)
    np.testing.assert_array_equal(loaded.heldout_label, data.heldout_label)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError, match="bad.npz"):
        ClientData.load(tmp_path / "bad.npz")
    with pytest.raises(InvalidInputError, match="not found"):
        ClientData.load(tmp_path / "absent.npz")
    with pytest.raises(InvalidInputError, match="float32"):
        ClientData(data.bottleneck.astype(np.float64), data.label, data.heldout_bottleneck, data.heldout_label)


def test_global_checkpoint_restores_into_the_model(adam_model_path, tmp_path):
    server = TransferModel.open(adam_model_path)
    global_model = GlobalModel(server)
    aggregated = {name: (value + 0.25).astype(np.float64) for name, value in global_model.initial_weights.items()}
    global_model.write_checkpoint(tmp_path / "global.ckpt", aggregated, server_round=3)
    saved = read_checkpoint(tmp_path / "global.ckpt")
    assert saved.model_fingerprint == global_model.fingerprint
    device = TransferModel.open(adam_model_path)
    device.restore_checkpoint(tmp_path / "global.ckpt")
    state = device.get_state()
    for name, value in aggregated.items():
        assert state[name].dtype == np.float32
        np.testing.assert_allclose(state[name], value, rtol=0, atol=1e-7)
    for name in set(state) - set(aggregated):                # slots, step, learning rate: compiled values
        np.testing.assert_array_equal(state[name], global_model.initial_state[name])
