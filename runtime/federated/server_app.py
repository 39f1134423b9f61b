"""The Flower ServerApp: Flower's own strategies over the head of one compiled model.

    flwr run runtime/federated/app <superlink> --run-config \\
        'model="/srv/model.tflite" checkpoint-dir="/srv/federation" num-rounds=10'

The server holds the same .tflite the devices hold: it starts the federation from the
model's compiled head weights, puts the model's fingerprint in every round's config (devices
with another model refuse; replies from other models are dropped), and after every round
writes the global head as `round-NNN.ckpt` (and `global.ckpt`) in `checkpoint-dir`: a
regular checkpoint of this model that every runtime's `restore_checkpoint` accepts.
`federation.json` there records each round's metrics, bytes per node and time.

Privacy options (run config, see `ServerSettings`): `dp-clipping-norm` > 0 wraps FedAvg in
Flower's `DifferentialPrivacyClientSideFixedClipping` (devices clip their update with
Flower's `fixedclipping_mod`, the server adds Gaussian noise of standard deviation
dp-noise-multiplier x dp-clipping-norm / min-nodes to the average, and every update weighs
the same); `secure-aggregation=true` runs the rounds under Flower's SecAgg+ workflow
(`secure_aggregation.py`), so the server only learns the sum of the masked updates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Callable, Mapping

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAdam, FedAvg, FedAvgM

from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated import wire
from tflite_transfer.runtime.federated.client_data import ClientData
from tflite_transfer.runtime.federated.global_model import GlobalModel, round_checkpoint_path
from tflite_transfer.runtime.federated.traffic import MeasuringGrid
from tflite_transfer.runtime.model import TransferModel

STRATEGIES = ("fedavg", "fedavgm", "fedadam")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """The run config of a federation (`[tool.flwr.app.config]`, or `flwr run --run-config`)."""
    model: str                         # the compiled .tflite every device holds
    checkpoint_dir: str
    num_rounds: int = 5
    strategy: str = "fedavg"
    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.0         # 0: each device's compiled learning rate
    server_learning_rate: float = 0.1  # fedadam's eta, fedavgm's server lr
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_nodes: int = 2
    heldout: str = ""                  # optional ClientData file the server scores each round
    seed: int = 0
    round_timeout: float = 600.0
    dp_clipping_norm: float = 0.0      # > 0: central DP, devices clip their update to this L2 norm
    dp_noise_multiplier: float = 0.0   # z: noise std z * dp_clipping_norm / min_nodes on the average
    secure_aggregation: bool = False   # Flower's SecAgg+ workflow
    secagg_num_shares: int = 3         # SecAgg+ key shares per device (odd; <= the devices sampled)
    secagg_reconstruction_threshold: int = 2
    secagg_max_weight: float = 1000.0  # bound on a device's weight (its sample count)
    secagg_clipping_range: float = 8.0  # SecAgg+ quantizes weight x value within +-this

    @classmethod
    def from_run_config(cls, run_config: Mapping) -> "ServerSettings":
        fields = {field.name: field for field in dataclasses.fields(cls)}
        values = {}
        for key, value in run_config.items():
            name = key.replace("-", "_")
            if name not in fields:
                continue
            default = fields[name].default
            kind = str if default is dataclasses.MISSING else type(default)
            if kind is bool and not isinstance(value, bool):
                raise InvalidInputError(f"run config {key} = {value!r} is not true or false")
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise InvalidInputError(f"run config {key} = {value!r} is not a {kind.__name__}") from None
        missing = [name for name in ("model", "checkpoint_dir") if name not in values]
        if missing:
            raise InvalidInputError(f"run config lacks {', '.join(n.replace('_', '-') for n in missing)}")
        settings = cls(**values)
        settings.check()
        return settings

    @property
    def differential_privacy(self) -> bool:
        return self.dp_clipping_norm > 0

    def check(self) -> None:
        """One clear error for settings Flower would refuse late, or that would not be private."""
        if self.strategy not in STRATEGIES:
            raise InvalidInputError(f"run config strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        finite = all(math.isfinite(v) for v in (self.dp_clipping_norm, self.dp_noise_multiplier))
        if not finite or self.dp_clipping_norm < 0 or self.dp_noise_multiplier < 0:
            raise InvalidInputError(f"run config dp-clipping-norm {self.dp_clipping_norm} and dp-noise-multiplier "
                                    f"{self.dp_noise_multiplier} must be finite and >= 0")
        if self.dp_noise_multiplier > 0 and not self.differential_privacy:
            raise InvalidInputError("run config dp-noise-multiplier > 0 needs dp-clipping-norm > 0 (the noise is "
                                    "calibrated to the clipping norm)")
        if (self.differential_privacy or self.secure_aggregation) and self.strategy != "fedavg":
            raise InvalidInputError(f"run config strategy {self.strategy!r}: differential privacy and secure "
                                    "aggregation run with strategy=\"fedavg\" (the noise is calibrated to an average)")
        if self.secure_aggregation and not (2 <= self.secagg_reconstruction_threshold <= self.secagg_num_shares
                                            <= self.min_nodes):
            raise InvalidInputError(
                f"run config secagg-reconstruction-threshold {self.secagg_reconstruction_threshold} and "
                f"secagg-num-shares {self.secagg_num_shares}: need 2 <= threshold <= shares <= the devices "
                f"sampled (min-nodes {self.min_nodes})")


def build_strategy(settings: ServerSettings):
    """One of Flower's strategies (Message API), sampling as the settings say; with
    `dp-clipping-norm`, wrapped in Flower's client-side fixed-clipping DP wrapper."""
    common = dict(fraction_train=settings.fraction_train, fraction_evaluate=settings.fraction_evaluate,
                  min_train_nodes=settings.min_nodes, min_evaluate_nodes=settings.min_nodes,
                  min_available_nodes=settings.min_nodes)
    if settings.strategy == "fedadam":
        return FedAdam(**common, eta=settings.server_learning_rate)
    if settings.strategy == "fedavgm":
        return FedAvgM(**common, server_learning_rate=settings.server_learning_rate, server_momentum=0.9)
    if not settings.differential_privacy:
        return FedAvg(**common)
    return DifferentialPrivacyClientSideFixedClipping(
        FedAvg(**common), noise_multiplier=settings.dp_noise_multiplier,
        clipping_norm=settings.dp_clipping_norm, num_sampled_clients=settings.min_nodes)


def round_config(settings: ServerSettings, fingerprint: str) -> dict:
    """What every train message carries besides the head (the server round is added by Flower)."""
    return {wire.FINGERPRINT: fingerprint, "local-epochs": settings.local_epochs,
            "batch-size": settings.batch_size, "learning-rate": settings.learning_rate, "seed": settings.seed,
            wire.UNIFORM_WEIGHTS: settings.differential_privacy}


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    server_round: int
    seconds: float                              # wall time of the round (train + evaluate)
    bytes_sent: dict[int, int]                  # node id -> bytes the server sent it
    bytes_received: dict[int, int]              # node id -> bytes it sent the server
    server_metrics: dict[str, float]            # scored by the server on `heldout` (if given)
    checkpoint: str


@dataclasses.dataclass(frozen=True)
class FederationResult:
    settings: ServerSettings
    fingerprint: str
    rounds: tuple[RoundRecord, ...]
    train_metrics: dict[int, dict]              # round -> Flower's aggregated client metrics
    evaluate_metrics: dict[int, dict]
    refusals: tuple[dict, ...]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True, default=str)


def run_federation(grid: Grid, context: Context, settings: ServerSettings,
                   progress: Callable[[str], None] = print) -> FederationResult:
    """Runs the strategy for `num_rounds`, writing the global checkpoint of every round."""
    global_model = GlobalModel(TransferModel.open(settings.model, num_threads=1))
    heldout = ClientData.load(settings.heldout) if settings.heldout else None
    os.makedirs(settings.checkpoint_dir, exist_ok=True)
    measuring = MeasuringGrid(grid, global_model)
    rounds: list[RoundRecord] = []
    clock = [time.perf_counter()]

    def after_round(server_round: int, weights: dict) -> dict[str, float]:
        path = round_checkpoint_path(settings.checkpoint_dir, server_round)
        global_model.write_checkpoint(path, weights, server_round)
        shutil.copyfile(path, os.path.join(settings.checkpoint_dir, "global.ckpt"))
        metrics = {}
        if heldout is not None:
            loss, accuracy = global_model.score(weights, heldout.heldout_bottleneck, heldout.heldout_label)
            metrics = {"global-loss": loss, "global-accuracy": accuracy}
        now = time.perf_counter()
        sent, received = measuring.take_traffic()
        rounds.append(RoundRecord(server_round, now - clock[0], sent, received, metrics, path))
        clock[0] = now
        progress(f"round {server_round}: {metrics or 'no server-side held-out set'}; checkpoint {path}")
        return metrics

    config = round_config(settings, global_model.fingerprint)
    if settings.secure_aggregation:
        from tflite_transfer.runtime.federated.secure_aggregation import run_secure_rounds  # noqa: PLC0415

        train_metrics, evaluate_metrics = run_secure_rounds(measuring, context, settings, global_model, config,
                                                            after_round)
    else:
        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            metrics = after_round(server_round, {name: array.numpy() for name, array in arrays.items()})
            return MetricRecord(metrics) if metrics else None

        result = build_strategy(settings).start(
            grid=measuring,
            initial_arrays=ArrayRecord({name: Array(value) for name, value in global_model.initial_weights.items()}),
            num_rounds=settings.num_rounds, timeout=settings.round_timeout,
            train_config=ConfigRecord(dict(config)),
            evaluate_config=ConfigRecord({wire.FINGERPRINT: global_model.fingerprint}), evaluate_fn=evaluate_fn)
        train_metrics = {r: dict(m) for r, m in result.train_metrics_clientapp.items()}
        evaluate_metrics = {r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()}
    federation = FederationResult(settings, global_model.fingerprint, tuple(rounds), train_metrics, evaluate_metrics,
                                  tuple(dataclasses.asdict(refusal) for refusal in measuring.refusals))
    with open(os.path.join(settings.checkpoint_dir, "federation.json"), "w") as handle:
        handle.write(federation.to_json())
    return federation


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_federation(grid, context, ServerSettings.from_run_config(context.run_config))
