"""The Flower ClientApp: a SuperNode (a device) trains and scores its own model copy.

    flower-supernode --insecure --superlink 127.0.0.1:9092 \\
        --node-config 'model="/data/model.tflite" data="/data/samples.npz"'

`model` is this device's compiled .tflite (the same file the server holds: checked by its
fingerprint), `data` its cached samples (`ClientData`). Messages carry the head's kernels and
biases (`arrays`) and the round config (`config`, with `model-fingerprint`); replies carry the
new weights, metrics and the device's fingerprint. Needs the `federated` extra (from a checkout:
`pip install '.[federated]'`).
"""

from __future__ import annotations

from typing import Callable

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated.client import FederatedClient, FitConfig
from tflite_transfer.runtime.federated.client_data import ClientData
from tflite_transfer.runtime.model import TransferModel

ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"
FINGERPRINT = "model-fingerprint"
NUM_EXAMPLES = "num-examples"          # the weight Flower's strategies average by

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


def _received(message: Message) -> tuple[dict, ConfigRecord]:
    content = message.content
    if ARRAYS not in content.array_records or CONFIG not in content.config_records:
        raise InvalidInputError(f"message lacks the '{ARRAYS}' ArrayRecord or the '{CONFIG}' ConfigRecord")
    weights = {name: array.numpy() for name, array in content.array_records[ARRAYS].items()}
    return weights, content.config_records[CONFIG]


def build_client_app(resolve: PathResolver = paths_from_node_config) -> ClientApp:
    client_app = ClientApp()

    @client_app.train()
    def train(message: Message, context: Context) -> Message:
        client = _client(context, resolve)
        weights, config = _received(message)
        result = client.fit(weights, str(config.get(FINGERPRINT, "")), FitConfig.from_config(config))
        reply = RecordDict({
            ARRAYS: ArrayRecord({name: Array(value) for name, value in result.weights.items()}),
            METRICS: MetricRecord({NUM_EXAMPLES: result.num_examples, "train-loss": result.train_loss,
                                   "train-seconds": result.seconds}),
            CONFIG: ConfigRecord({FINGERPRINT: client.fingerprint}),
        })
        return Message(content=reply, reply_to=message)

    @client_app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        client = _client(context, resolve)
        weights, config = _received(message)
        result = client.evaluate(weights, str(config.get(FINGERPRINT, "")))
        reply = RecordDict({
            METRICS: MetricRecord({NUM_EXAMPLES: result.num_examples, "eval-loss": result.loss,
                                   "eval-accuracy": result.accuracy}),
            CONFIG: ConfigRecord({FINGERPRINT: client.fingerprint}),
        })
        return Message(content=reply, reply_to=message)

    return client_app


app = build_client_app()
