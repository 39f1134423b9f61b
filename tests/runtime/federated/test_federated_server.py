"""The ServerApp's settings and strategy choice (Flower's own strategies)."""

from __future__ import annotations

import os

import pytest

try:
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAdam, FedAvg, FedAvgM
except ImportError:
    if os.environ.get("CI"):
        raise RuntimeError("flwr is not installed: pip install -e '.[test]' (flwr==1.42.0)") from None
    from tflite_transfer.runtime.installation import install_command

    pytest.skip(f"flwr not installed ({install_command('federated')})", allow_module_level=True)

from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated.server_app import ServerSettings, build_strategy, round_config
from tflite_transfer.runtime.federated.wire import UNIFORM_WEIGHTS
from tflite_transfer.runtime.federated.traffic import refusal_reason


def test_run_config_is_typed():
    settings = ServerSettings.from_run_config(
        {"model": "m.tflite", "checkpoint-dir": "out", "num-rounds": 3, "learning-rate": 1, "strategy": "fedadam"})
    assert settings.num_rounds == 3 and settings.learning_rate == 1.0 and isinstance(settings.learning_rate, float)
    assert isinstance(build_strategy(settings), FedAdam)
    assert type(build_strategy(ServerSettings("m", "o"))) is FedAvg
    assert isinstance(build_strategy(ServerSettings("m", "o", strategy="fedavgm")), FedAvgM)


@pytest.mark.parametrize("config, message", [
    ({"checkpoint-dir": "out"}, "lacks model"),
    ({"model": "m.tflite", "checkpoint-dir": "out", "strategy": "fedsgd"}, "choose one of fedavg"),
    ({"model": "m.tflite", "checkpoint-dir": "out", "num-rounds": "three"}, "num-rounds"),
])
def test_bad_run_config_is_one_clear_error(config, message):
    with pytest.raises(InvalidInputError, match=message):
        ServerSettings.from_run_config(config)


@pytest.mark.parametrize("config, message", [
    ({"dp-noise-multiplier": 1.0}, "needs dp-clipping-norm"),
    ({"dp-clipping-norm": -1.0}, "must be finite"),
    ({"dp-clipping-norm": 1.0, "strategy": "fedadam"}, "strategy=\"fedavg\""),
    ({"secure-aggregation": "yes"}, "not true or false"),
    ({"secure-aggregation": True, "min-nodes": 2, "secagg-num-shares": 3}, "secagg-num-shares"),
    ({"secure-aggregation": True, "secagg-reconstruction-threshold": 1}, "threshold"),
])
def test_privacy_settings_are_checked_up_front(config, message):
    with pytest.raises(InvalidInputError, match=message):
        ServerSettings.from_run_config({"model": "m.tflite", "checkpoint-dir": "out", "min-nodes": 3, **config})


def test_differential_privacy_wraps_fedavg_with_flowers_client_side_clipping():
    settings = ServerSettings.from_run_config({"model": "m", "checkpoint-dir": "o", "min-nodes": 4,
                                               "dp-clipping-norm": 0.5, "dp-noise-multiplier": 1.2})
    strategy = build_strategy(settings)
    assert isinstance(strategy, DifferentialPrivacyClientSideFixedClipping) and type(strategy.strategy) is FedAvg
    assert (strategy.clipping_norm, strategy.noise_multiplier, strategy.num_sampled_clients) == (0.5, 1.2, 4)
    assert round_config(settings, "f")[UNIFORM_WEIGHTS] is True
    assert round_config(ServerSettings("m", "o"), "f")[UNIFORM_WEIGHTS] is False


def test_replies_from_other_models_are_dropped():
    assert refusal_reason("a" * 64, "a" * 64, node=7) is None
    for reply in ("b" * 64, None, ""):
        assert "node 7" in refusal_reason(reply, "a" * 64, node=7)
