"""The Flower ClientApp: a SuperNode (a device) trains and scores its own model copy.

    flower-supernode --superlink 127.0.0.1:9092 --root-certificates ca.crt \\
        --auth-supernode-private-key device-key \\
        --node-config 'model="/data/model.tflite" data="/data/samples.npz"'

`model` is this device's compiled .tflite (the same file the server holds: checked by its
fingerprint), `data` its cached samples (`ClientData`). Messages carry the head's kernels and
biases and the round config with `model-fingerprint` (`wire.py`: the Message API layout, or
the legacy one of Flower's SecAgg+ workflow); replies carry the new weights, metrics and the
device's fingerprint. Train messages go through `privacy_mods.privacy_mod` (Flower's SecAgg+
and clipping mods when the server asks for them; the node config may demand them). Needs
from a checkout `pip install '.[federated]'`.
"""

from __future__ import annotations

from typing import Callable

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated import wire
from tflite_transfer.runtime.federated.client import FederatedClient, FitConfig
from tflite_transfer.runtime.federated.client_data import ClientData
from tflite_transfer.runtime.federated.privacy_mods import privacy_mod
from tflite_transfer.runtime.model import TransferModel

# Where a node finds its model file and its samples, from its Flower Context.
PathResolver = Callable[[Context], tuple[str, str]]

# One interpreter per model file and one sample set per file in this process: a simulation
# runs many virtual nodes in one worker, a SuperNode's ClientApp process one.
_models: dict[str, TransferModel] = {}
_data: dict[str, ClientData] = {}


def paths_from_node_config(context: Context) -> tuple[str, str]:
    """`model` and `data` from the SuperNode's --node-config."""
    missing = [key for key in ("model", "data") if key not in context.node_config]
    if missing:
        raise InvalidInputError(
            f"SuperNode --node-config lacks {', '.join(missing)}: start it with --node-config "
            "'model=\"/path/model.tflite\" data=\"/path/samples.npz\"'")
    return str(context.node_config["model"]), str(context.node_config["data"])


def _client(context: Context, resolve: PathResolver) -> FederatedClient:
    model_path, data_path = resolve(context)
    if model_path not in _models:
        _models[model_path] = TransferModel.open(model_path, num_threads=1)
    if data_path not in _data:
        _data[data_path] = ClientData.load(data_path)
    return FederatedClient(_models[model_path], _data[data_path])


def build_client_app(resolve: PathResolver = paths_from_node_config) -> ClientApp:
    client_app = ClientApp()

    @client_app.train(mods=[privacy_mod])
    def train(message: Message, context: Context) -> Message:
        client = _client(context, resolve)
        weights, config, layout = wire.received(message.content, client.metadata, "train")
        result = client.fit(weights, str(config.get(wire.FINGERPRINT, "")), FitConfig.from_config(config))
        uniform = bool(config.get(wire.UNIFORM_WEIGHTS, False))
        metrics = {"train-loss": result.train_loss, "train-seconds": result.seconds}
        reply = wire.train_reply(layout, client.metadata, result.weights, 1 if uniform else result.num_examples,
                                 metrics, client.fingerprint)
        return Message(content=reply, reply_to=message)

    @client_app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        client = _client(context, resolve)
        weights, config, layout = wire.received(message.content, client.metadata, "evaluate")
        result = client.evaluate(weights, str(config.get(wire.FINGERPRINT, "")))
        reply = wire.evaluate_reply(layout, result.loss, result.num_examples,
                                    {"eval-loss": result.loss, "eval-accuracy": result.accuracy},
                                    client.fingerprint)
        return Message(content=reply, reply_to=message)

    return client_app


app = build_client_app()
