"""Federated rounds under Flower's secure aggregation (SecAgg+).

Flower 1.42 runs SecAgg+ only in its legacy workflow API: `flwr.server.workflow.
DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))` over a `LegacyContext` and a
`flwr.server.strategy` strategy (FedAvg, optionally in the legacy
`DifferentialPrivacyClientSideFixedClipping` wrapper), as Flower's own SecAgg+ and DP+SA
examples do. Each train round is then four message exchanges (setup, key shares, masked
vectors, unmask): a device sends its head (weight x kernels and biases, quantized and
masked) only inside the third, and the server learns only the weighted sum.

What SecAgg+ does to the numbers (Flower's defaults unless the run config says otherwise):
each device multiplies its arrays by weight / secagg-max-weight, clips each value to
+-secagg-clipping-range and quantizes it to 2^22 levels; after unmasking the server divides
by the summed weights. Rounding is stochastic, so a device's value is off by less than one
level: 16 / 2^22 / (weight / max weight), e.g. 1.9e-4 for a device with 20 samples under the
default max weight 1000 (3.8e-6 under differential privacy, where every weight is 1 and the
max weight is set to 1); the federation report measures the effect on accuracy.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from flwr.app import Context
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import default_evaluate_workflow

from tflite_transfer.runtime.federated import head, wire

RoundCallback = Callable[[int, dict], Mapping[str, float]]


def weighted_mean(results: list[tuple[int, dict]]) -> dict[str, float]:
    """Flower's legacy metrics aggregation: the weighted mean of every numeric metric."""
    total = sum(weight for weight, _ in results)
    names = {name for _, metrics in results for name, value in metrics.items()
             if isinstance(value, (int, float)) and not isinstance(value, bool)}
    if not total:
        return {}
    return {name: sum(weight * float(metrics.get(name, 0.0)) for weight, metrics in results) / total
            for name in sorted(names)}


def build_legacy_strategy(settings, global_model, config: dict):
    """FedAvg in the legacy API (what SecAgg+ aggregates with), DP-wrapped if asked."""
    entries = head.trainable_entries(global_model.metadata)
    strategy = FedAvg(
        fraction_fit=settings.fraction_train, fraction_evaluate=settings.fraction_evaluate,
        min_fit_clients=settings.min_nodes, min_evaluate_clients=settings.min_nodes,
        min_available_clients=settings.min_nodes,
        on_fit_config_fn=lambda server_round: {**config, "server-round": server_round},
        on_evaluate_config_fn=lambda server_round: {wire.FINGERPRINT: global_model.fingerprint},
        initial_parameters=ndarrays_to_parameters([global_model.initial_weights[e.name] for e in entries]),
        fit_metrics_aggregation_fn=weighted_mean, evaluate_metrics_aggregation_fn=weighted_mean)
    if not settings.differential_privacy:
        return strategy
    return DifferentialPrivacyClientSideFixedClipping(
        strategy, noise_multiplier=settings.dp_noise_multiplier, clipping_norm=settings.dp_clipping_norm,
        num_sampled_clients=settings.min_nodes)


def _by_round(history_metrics: dict[str, list[tuple[int, float]]]) -> dict[int, dict]:
    rounds: dict[int, dict] = {}
    for name, values in history_metrics.items():
        for server_round, value in values:
            rounds.setdefault(server_round, {})[name] = value
    return rounds


def run_secure_rounds(grid, context: Context, settings, global_model, config: dict,
                      after_round: RoundCallback) -> tuple[dict, dict]:
    """Runs `num_rounds` SecAgg+ rounds; `after_round(round, head weights)` after each one's
    evaluation (round 0: the compiled head). Returns Flower's aggregated client metrics
    (train, evaluate) by round."""
    entries = head.trainable_entries(global_model.metadata)
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=settings.num_rounds,
                                                        round_timeout=settings.round_timeout),
                           strategy=build_legacy_strategy(settings, global_model, config))

    def evaluate_then_record(workflow_grid, workflow_context: LegacyContext) -> None:
        default_evaluate_workflow(workflow_grid, workflow_context)
        server_round = int(workflow_context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        parameters = compat.arrayrecord_to_parameters(
            workflow_context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        arrays = parameters_to_ndarrays(parameters)
        after_round(server_round, {entry.name: np.asarray(value) for entry, value in zip(entries, arrays)})

    after_round(0, dict(global_model.initial_weights))
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=settings.secagg_num_shares,
            reconstruction_threshold=settings.secagg_reconstruction_threshold,
            # Under differential privacy every device weighs 1 (wire.UNIFORM_WEIGHTS): the
            # tightest bound keeps the full 2^22 quantization levels for the values.
            max_weight=1.0 if settings.differential_privacy else settings.secagg_max_weight,
            clipping_range=settings.secagg_clipping_range,
            timeout=settings.round_timeout),
        evaluate_workflow=evaluate_then_record)
    workflow(grid, legacy)
    return _by_round(legacy.history.metrics_distributed_fit), _by_round(legacy.history.metrics_distributed)
