"""The ServerApp's settings and strategy choice (Flower's own strategies)."""

from __future__ import annotations

import os

import pytest

try:
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM
except ImportError:
    if os.environ.get("CI"):
        raise RuntimeError("flwr is not installed: pip install -e '.[test]' (flwr==1.42.0)") from None
    from tflite_transfer.runtime.installation import install_command

    pytest.skip(f"flwr not installed ({install_command('federated')})", allow_module_level=True)

from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated.server_app import ServerSettings, build_strategy
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


def test_replies_from_other_models_are_dropped():
    assert refusal_reason("a" * 64, "a" * 64, node=7) is None
    for reply in ("b" * 64, None, ""):
        assert "node 7" in refusal_reason(reply, "a" * 64, node=7)
