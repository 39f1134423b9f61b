"""Differential privacy and secure aggregation on Flower's own mechanisms, in one process.

Flower's strategies and workflows drive our ClientApp through `in_process.InProcessGrid` (messages go
through Flower's serde, each device keeps its own Context); the references are computed
without Flower: each device's round by `FederatedClient.fit` with the same config, then the
clipping and averaging in numpy. Checked: Flower's clipping mod bounds exactly the head's
kernels and biases (the update, new head minus received head), the server's noise has the
calibrated size, SecAgg+ returns the plain average (within its quantization) while no reply
carries a device's head in the clear, a device's own demands refuse a round, and a bad head
in either message layout is refused before anything changes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

try:
    import flwr  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise RuntimeError("flwr is not installed: pip install -e '.[test]' (flwr==1.42.0)") from None
    pytest.skip("flwr not installed (pip install 'tflite-transfer[federated]')", allow_module_level=True)

from flwr.app import Message
from flwr.common import FitIns, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat

from tests.helpers import colour_images
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.checkpoint import read_checkpoint
from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated import client_app as client_app_module
from tflite_transfer.runtime.federated import head
from tflite_transfer.runtime.federated.client import FederatedClient, FitConfig
from tflite_transfer.runtime.federated.client_data import ClientData
from tflite_transfer.runtime.federated.in_process import InProcessGrid, ServerIdentity
from tflite_transfer.runtime.federated.server_app import ServerSettings, run_federation

DEVICES = (11, 22, 33)
ROUND = dict(local_epochs=2, batch_size=8, learning_rate=0.5, seed=0)


@pytest.fixture(scope="module")
def device_files(tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("privacy")
    model = TransferModel.open(tiny_model_path)
    files = {}
    for index, node in enumerate(DEVICES):
        images, labels = colour_images(8, seed=10 + index)
        bottlenecks = model.load(images)
        files[node] = str(folder / f"device{node}.npz")
        ClientData(bottlenecks[:18], labels[:18], bottlenecks[18:], labels[18:]).save(files[node])
    return files


def federate(model_path, device_files, tmp_path, node_configs=None, device_models=None, **privacy):
    """One round with Flower's strategy/workflow; (grid, head weights after the round)."""
    device_models = device_models or {}
    app = client_app_module.build_client_app(lambda context: (
        device_models.get(int(context.node_config["device"]), model_path),
        device_files[int(context.node_config["device"])]))
    configs = {node: {"device": node, **(node_configs or {}).get(node, {})} for node in DEVICES}
    grid = InProcessGrid(app, configs)
    settings = ServerSettings(model=model_path, checkpoint_dir=str(tmp_path / "checkpoints"), num_rounds=1,
                              min_nodes=len(DEVICES), fraction_evaluate=0.0, round_timeout=60.0, **ROUND, **privacy)
    with ServerIdentity():
        from flwr.app import Context, RecordDict  # noqa: PLC0415

        result = run_federation(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                                settings, progress=lambda line: None)
    saved = read_checkpoint(result.rounds[-1].checkpoint)
    return grid, result, {name: saved.tensors[name] for name in head.head_weights(TransferModel.open(model_path))}


def reference_updates(model_path, device_files, nodes=DEVICES) -> dict[int, dict[str, np.ndarray]]:
    """Each device's round without Flower: head after local training minus the head sent."""
    model = TransferModel.open(model_path)
    start = head.head_weights(model)
    fingerprint = head.typed_metadata(model).fingerprint
    config = FitConfig(ROUND["local_epochs"], ROUND["batch_size"], ROUND["seed"] + 1, ROUND["learning_rate"])
    updates = {}
    for node in nodes:
        result = FederatedClient(TransferModel.open(model_path), ClientData.load(device_files[node])).fit(
            start, fingerprint, config)
        updates[node] = {name: result.weights[name].astype(np.float64) - start[name] for name in start}
    return updates


def norm(update: dict) -> float:
    return float(np.sqrt(sum(np.sum(np.square(value)) for value in update.values())))


def clipped(update: dict, clipping_norm: float) -> dict:
    scale = min(1.0, clipping_norm / norm(update))
    return {name: value * scale for name, value in update.items()}


def mean_head(start: dict, updates: list[dict]) -> dict:
    return {name: start[name] + np.mean([u[name] for u in updates], axis=0) for name in start}


def train_replies(grid):
    return [(sent, reply) for sent, reply in grid.delivered if sent.metadata.message_type == "train"]


def test_client_side_clipping_bounds_exactly_the_heads_update(tiny_model_path, device_files, tmp_path):
    start = head.head_weights(TransferModel.open(tiny_model_path))
    updates = reference_updates(tiny_model_path, device_files)
    clipping_norm = 0.5 * min(norm(u) for u in updates.values())       # every update gets clipped
    grid, _, aggregate = federate(tiny_model_path, device_files, tmp_path, dp_clipping_norm=clipping_norm)
    replies = train_replies(grid)
    assert len(replies) == len(DEVICES)
    for sent, reply in replies:
        sent_head = {name: array.numpy() for name, array in sent.content.array_records["arrays"].items()}
        sent_config = sent.content.config_records["config"]
        assert sent_config["clipping_norm"] == clipping_norm and sent_config["uniform-weights"] is True
        sent_back = {name: array.numpy() for name, array in reply.content.array_records["arrays"].items()}
        assert list(sent_back) == [entry.name for entry in head.trainable_entries(
            head.typed_metadata(TransferModel.open(tiny_model_path)))]
        update = {name: sent_back[name].astype(np.float64) - sent_head[name] for name in sent_back}
        expected = clipped(updates[reply.metadata.src_node_id], clipping_norm)
        assert norm(update) == pytest.approx(clipping_norm, rel=1e-5)
        for name in update:
            np.testing.assert_allclose(update[name], expected[name], rtol=0, atol=1e-6)
        assert reply.content.metric_records["metrics"]["num-examples"] == 1       # uniform weights
    # No noise asked: the global head is the plain mean of the clipped updates.
    expected = mean_head(start, [clipped(u, clipping_norm) for u in updates.values()])
    for name in aggregate:
        np.testing.assert_allclose(aggregate[name], expected[name], rtol=0, atol=1e-6)


def test_the_servers_noise_has_the_calibrated_size(tiny_model_path, device_files, tmp_path):
    start = head.head_weights(TransferModel.open(tiny_model_path))
    updates = reference_updates(tiny_model_path, device_files)
    clipping_norm, noise_multiplier = 0.5 * min(norm(u) for u in updates.values()), 2.0
    np.random.seed(20261206)               # Flower draws the noise from numpy's global generator
    _, _, aggregate = federate(tiny_model_path, device_files, tmp_path, dp_clipping_norm=clipping_norm,
                               dp_noise_multiplier=noise_multiplier)
    without_noise = mean_head(start, [clipped(u, clipping_norm) for u in updates.values()])
    noise = np.concatenate([(aggregate[name] - without_noise[name]).ravel() for name in aggregate])
    expected = noise_multiplier * clipping_norm / len(DEVICES)       # Flower's compute_stdv
    # 24 values: their RMS lies within 0.4x-1.8x of the standard deviation with probability
    # 1 - 1.0e-6 (chi-square, 24 degrees of freedom), whatever the seed.
    assert 0.4 * expected < float(np.sqrt(np.mean(noise ** 2))) < 1.8 * expected


@pytest.mark.parametrize("dp", [False, True])
def test_secure_aggregation_gives_the_average_and_hides_each_head(tiny_model_path, device_files, tmp_path, dp):
    start = head.head_weights(TransferModel.open(tiny_model_path))
    updates = reference_updates(tiny_model_path, device_files)
    clipping_norm = 0.5 * min(norm(u) for u in updates.values())
    privacy = {"dp_clipping_norm": clipping_norm} if dp else {}
    grid, result, aggregate = federate(tiny_model_path, device_files, tmp_path, secure_aggregation=True, **privacy)
    expected = mean_head(start, [clipped(u, clipping_norm) if dp else u for u in updates.values()])
    # SecAgg+ quantization: weight / max weight scales the values (18 / 1000 without DP; 1 / 1
    # with DP's uniform weights), then stochastic rounding to 2^22 levels over +-8 (error < one
    # level): < 3 x 16 / 2^22 / (3 x 0.018) = 2.1e-4 without DP, 3.8e-6 with.
    for name in aggregate:
        np.testing.assert_allclose(aggregate[name], expected[name], rtol=0, atol=4e-6 if dp else 2.2e-4)
        assert not np.allclose(aggregate[name], start[name] + updates[DEVICES[0]][name], rtol=0, atol=1e-3)
    replies = train_replies(grid)
    assert len(replies) == 4 * len(DEVICES)                        # setup, shares, masked vectors, unmask
    for _, reply in replies:                                       # no head in the clear, ever
        assert not reply.has_error() and all(len(record) == 0 for record in reply.content.array_records.values())
    masked = [reply for _, reply in replies if "masked_params" in reply.content.config_records.get(
        "secaggplus_configs", {})]
    assert len(masked) == len(DEVICES)
    assert result.rounds[1].bytes_received and not result.refusals


def test_a_device_that_refuses_inside_secure_aggregation_is_unmasked_as_a_dropout(
        tiny_model_path, other_model_path, device_files, tmp_path):
    """The device holding another model refuses when its head is due (masked-vector stage);
    Flower's SecAgg+ removes its masks with the others' key shares: the others' average."""
    start = head.head_weights(TransferModel.open(tiny_model_path))
    updates = reference_updates(tiny_model_path, device_files, DEVICES[:-1])
    clipping_norm = 0.5 * min(norm(u) for u in updates.values())
    _, result, aggregate = federate(tiny_model_path, device_files, tmp_path, device_models={DEVICES[-1]: other_model_path},
                                    secure_aggregation=True, dp_clipping_norm=clipping_norm)
    assert [(r["node_id"], r["message_type"]) for r in result.refusals] == [(DEVICES[-1], "train")]
    expected = mean_head(start, [clipped(u, clipping_norm) for u in updates.values()])
    for name in aggregate:
        np.testing.assert_allclose(aggregate[name], expected[name], rtol=0, atol=4e-6)


@pytest.mark.parametrize("demand, privacy, refused", [
    ({"require-secure-aggregation": True}, {}, "requires secure aggregation"),
    ({"max-clipping-norm": 1.0}, {}, "requires clipping"),
    ({"max-clipping-norm": 0.001}, {"dp_clipping_norm": 0.5}, "exceeds this device's max-clipping-norm"),
])
def test_a_device_refuses_a_round_below_its_own_demands(tiny_model_path, device_files, tmp_path, demand,
                                                          privacy, refused):
    start = head.head_weights(TransferModel.open(tiny_model_path))
    demanding = DEVICES[-1]
    _, result, aggregate = federate(tiny_model_path, device_files, tmp_path, {demanding: demand}, **privacy)
    assert [(r["node_id"], r["message_type"]) for r in result.refusals] == [(demanding, "train")]
    assert refused in result.refusals[0]["reason"]
    others = reference_updates(tiny_model_path, device_files, DEVICES[:-1])
    if "dp_clipping_norm" in privacy:
        others = {node: clipped(u, privacy["dp_clipping_norm"]) for node, u in others.items()}
    expected = mean_head(start, list(others.values()))             # averaged without the refusing device
    for name in aggregate:
        np.testing.assert_allclose(aggregate[name], expected[name], rtol=0, atol=1e-6)


def test_the_same_device_joins_when_its_demands_are_met(tiny_model_path, device_files, tmp_path):
    demand = {node: {"require-secure-aggregation": "true", "max-clipping-norm": 10.0} for node in DEVICES}
    _, result, _ = federate(tiny_model_path, device_files, tmp_path, demand, secure_aggregation=True,
                            dp_clipping_norm=1.0)
    assert not result.refusals and result.train_metrics[1]["train-loss"] > 0


@pytest.mark.parametrize("problem", ["shape", "count", "nan"])
def test_a_bad_head_in_the_secure_aggregation_layout_changes_nothing(tiny_model_path, device_files, problem):
    """SecAgg+ sends the head by position (legacy Parameters): it is checked all the same."""
    from flwr.app import Context, RecordDict  # noqa: PLC0415

    app = client_app_module.build_client_app(lambda context: (tiny_model_path, device_files[DEVICES[0]]))
    device = client_app_module._models.setdefault(tiny_model_path, TransferModel.open(tiny_model_path))
    arrays = [np.array(value) for value in head.head_weights(device).values()]
    if problem == "shape":
        arrays[0] = arrays[0][:, :-1]
    elif problem == "count":
        arrays = arrays[:1]
    else:
        arrays[-1] = np.full_like(arrays[-1], np.nan)
    config = {"model-fingerprint": head.typed_metadata(device).fingerprint, "server-round": 1}
    content = compat.fitins_to_recorddict(FitIns(ndarrays_to_parameters(arrays), config), keep_input=False)
    context = Context(run_id=1, node_id=DEVICES[0], node_config={}, state=RecordDict(), run_config={})
    before = device.get_state()
    with ServerIdentity(), pytest.raises(InvalidInputError, match="federated parameter"):
        app(Message(content, dst_node_id=DEVICES[0], message_type="train", group_id="1"), context)
    for name, value in device.get_state().items():
        np.testing.assert_array_equal(value, before[name])
