"""compiler/passes/feature_scale.py: the bottleneck scale measured on the cut base, and the
learning rate a compile without --learning_rate gets from it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import compile_model
from tflite_transfer.compiler.cli import summary
from tflite_transfer.compiler.passes import feature_scale
from tflite_transfer.runtime import TransferModel


@pytest.fixture(scope="module")
def default_rate_model(tiny_classifier_path, tiny_pool_name):
    return compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3)


def test_the_default_rate_is_the_stable_bound_of_the_measured_features(default_rate_model, tmp_path):
    """Independently: the compiled model's own `load` on the same synthetic inputs (uint8: the
    whole range, the same seed) gives the largest |x|^2; SGD starts at 4 / (1 + that)."""
    path = tmp_path / "model.tflite"
    path.write_bytes(default_rate_model.model_bytes)
    model = TransferModel.open(str(path))
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 256, (feature_scale.MEASURE_INPUTS, *model.image_shape)).astype(np.uint8)
    largest = float((model.load(inputs).astype(np.float64) ** 2).sum(1).max())
    assert model.metadata.bottleneck_max_norm2 == pytest.approx(largest, rel=1e-6)
    assert model.optimizer["learning_rate"] == pytest.approx(4.0 / (1.0 + largest), rel=1e-6)
    assert default_rate_model.feature_scale.inputs == f"{feature_scale.MEASURE_INPUTS} synthetic inputs uniform over uint8"
    text = summary.format_summary(default_rate_model, "out.tflite")
    assert f"SGD is stable below {4.0 / (1.0 + largest):.3g}" in text


def test_a_given_rate_is_kept_and_adam_starts_at_its_own(tiny_classifier_path, tiny_pool_name, default_rate_model):
    given = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.25)
    assert given.metadata.optimizer["learning_rate"] == 0.25
    assert given.metadata.bottleneck_max_norm2 == default_rate_model.metadata.bottleneck_max_norm2
    adam = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, optimizer="adam")
    assert adam.metadata.optimizer["learning_rate"] == feature_scale.ADAM_LEARNING_RATE
    momentum = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, optimizer="momentum")
    sgd_rate = default_rate_model.metadata.optimizer["learning_rate"]
    assert momentum.metadata.optimizer["learning_rate"] == pytest.approx(1.9 * sgd_rate, rel=1e-6)
