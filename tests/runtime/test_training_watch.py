"""runtime/training_watch.py and what fit does with it: a loss that rises without a NaN is
caught and rolled back with one line naming the stable learning rate; the bound is the
curvature bound of the loss, computed here independently with TensorFlow's Hessian."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tflite_transfer.runtime import TransferModel, training_watch
from tflite_transfer.runtime.errors import TrainingDivergedError, UnsupportedModelError, VerificationError

CLASSES, FEATURES = 3, 7


def landmark_like(count: int, norm2: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable features with |x|^2 ~ norm2 (the issue's landmark base: ~1e7): class c has a
    larger coordinate c, on top of a large common offset, like uncentred coordinates."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int32) % CLASSES
    features = rng.uniform(0.8, 1.2, (count, FEATURES))
    features[np.arange(count), labels] += 0.5
    features *= np.sqrt(norm2 / (features ** 2).sum(1).mean())
    return features.astype(np.float32), labels


def test_a_rising_loss_is_rolled_back_with_the_stable_rate(tiny_model_path):
    model = TransferModel.open(tiny_model_path)
    bottlenecks, labels = landmark_like(24, 1e7)
    model.add_bottlenecks(bottlenecks, labels)
    model.set_learning_rate(0.001)          # the old default: ~250x the stable rate here
    with pytest.raises(TrainingDivergedError) as caught:
        model.fit(epochs=30, batch_size=8, seed=0, progress=False, imprint=False)
    error = caught.value
    assert isinstance(error, VerificationError)
    assert all(np.isfinite(error.losses)), "the watch, not a NaN, must stop this run"
    message = str(error)
    assert "\n" not in message and "training diverged in epoch" in message and "rolled back" in message
    largest = float((bottlenecks.astype(np.float64) ** 2).sum(1).max())
    assert error.stable_learning_rate == pytest.approx(4.0 / (1.0 + largest), rel=1e-12)
    suggested = float(re.search(r"set_learning_rate\(([0-9.e+-]+)\)", message).group(1))
    assert suggested == pytest.approx(error.stable_learning_rate, rel=0.05)
    # Rolled back to the best epoch: its loss is the lowest seen, and the weights score it.
    state = model.get_state()
    logits = bottlenecks.astype(np.float64) @ state["dense_0_kernel"].T.astype(np.float64) + state["dense_0_bias"]
    logits -= logits.max(1, keepdims=True)
    loss = float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(labels)), labels]))
    assert loss <= min(error.losses) * 1.001 + 1e-6 or loss <= error.losses[0]
    # At the stable rate, the same samples train.
    model.reset()
    model.set_learning_rate(error.stable_learning_rate)
    losses = model.fit(epochs=30, batch_size=8, seed=0, progress=False, imprint=False)
    assert losses[-1] < losses[0]


def test_a_converging_run_raises_nothing(tiny_model_path):
    model = TransferModel.open(tiny_model_path)
    bottlenecks, labels = landmark_like(24, 1e7, seed=1)
    model.add_bottlenecks(bottlenecks, labels)
    model.set_learning_rate(0.5 * model.stable_learning_rate())
    losses = model.fit(epochs=40, batch_size=8, seed=0, progress=False, imprint=False)
    assert losses[-1] < 0.9 * losses[0] and max(losses) <= losses[0] * 1.01   # slow (uncentred) but steady


def test_fit_imprints_a_fresh_head_first(tiny_model_path):
    bottlenecks, labels = landmark_like(24, 4.0, seed=2)
    fresh, manual = TransferModel.open(tiny_model_path), TransferModel.open(tiny_model_path)
    for model in (fresh, manual):
        model.add_bottlenecks(bottlenecks, labels)
    manual.imprint()
    expected = manual.fit(epochs=3, batch_size=8, seed=4, progress=False, imprint=False)
    assert fresh.fit(epochs=3, batch_size=8, seed=4, progress=False) == expected
    for name, value in manual.get_state().items():
        np.testing.assert_array_equal(fresh.get_state()[name], value, err_msg=name)
    # Trained weights are not fresh: a second fit continues from them, without imprinting.
    again = manual.get_state()
    fresh.fit(epochs=1, batch_size=8, seed=5, progress=False)
    manual.fit(epochs=1, batch_size=8, seed=5, progress=False, imprint=False)
    for name, value in manual.get_state().items():
        np.testing.assert_array_equal(fresh.get_state()[name], value, err_msg=name)
    assert not all(np.array_equal(again[n], v) for n, v in manual.get_state().items())


def test_imprint_true_needs_a_single_layer_softmax_head(small_model_path):
    model = TransferModel.open(small_model_path)   # mlp:16 head
    model.add_bottlenecks(np.ones((4, model.metadata.bottleneck_size), np.float32), [0, 1, 2, 3])
    before = model.get_state()
    with pytest.raises(UnsupportedModelError, match="single-layer softmax head"):
        model.fit(epochs=1, progress=False, imprint=True)
    for name, value in model.get_state().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def _hessian_largest_eigenvalue(features: np.ndarray, kernel: np.ndarray, bias: np.ndarray, loss: str) -> float:
    """lambda_max of the Hessian of the mean loss over (kernel, bias), by TensorFlow autodiff."""
    import tensorflow as tf

    x = tf.constant(features, tf.float64)
    labels = tf.one_hot(np.arange(len(features)) % kernel.shape[0], kernel.shape[0], dtype=tf.float64)
    weights = tf.Variable(np.concatenate([kernel, bias[:, None]], 1).ravel())
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            matrix = tf.reshape(weights, kernel.shape[:1] + (kernel.shape[1] + 1,))
            logits = x @ tf.transpose(matrix[:, :-1]) + matrix[:, -1]
            if loss == "mse":
                value = tf.reduce_sum(tf.square(logits - labels)) / tf.cast(tf.size(logits), tf.float64)
            else:
                value = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits))
        gradient = inner.gradient(value, weights)
    hessian = outer.jacobian(gradient, weights).numpy()
    return float(np.linalg.eigvalsh((hessian + hessian.T) / 2).max())


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_the_bound_is_the_curvature_limit(loss):
    """2 / lambda_max(Hessian) (the step above which gradient descent diverges on the worst
    direction) is at least the bound for any batch and weights, and equals it for the worst
    case: one sample, two classes at p = 1/2 (softmax), any weights (mse)."""
    rng = np.random.default_rng(0)
    for trial in range(6):
        features = rng.normal(0, 3, (5, 4)) + rng.uniform(0, 5)
        kernel, bias = rng.normal(0, 0.3, (3, 4)), rng.normal(0, 0.3, 3)
        bound = training_watch.stable_learning_rate(training_watch.largest_norm2(features), loss, 3, "sgd")
        assert 2.0 / _hessian_largest_eigenvalue(features, kernel, bias, loss) >= bound * (1 - 1e-9), trial
    one = rng.normal(0, 3, (1, 4))
    worst_kernel, worst_bias = np.zeros((2, 4)), np.array([0.0, 0.0])   # p = (1/2, 1/2)
    bound = training_watch.stable_learning_rate(training_watch.largest_norm2(one), loss, 2, "sgd")
    assert 2.0 / _hessian_largest_eigenvalue(one, worst_kernel, worst_bias, loss) == pytest.approx(bound, rel=1e-9)


def test_momentum_and_adam_bounds():
    assert training_watch.stable_learning_rate(99.0, "softmax_cross_entropy", 3, "momentum", 0.9) == \
        pytest.approx(1.9 * 4.0 / 100.0)
    assert training_watch.stable_learning_rate(99.0, "softmax_cross_entropy", 3, "adam") is None


def test_the_watch_ignores_noise_and_empty_epochs():
    watch = training_watch.LossWatch({"w": 0})
    watch.first_step(2.0)
    for epoch, loss in enumerate([1.5, 1.9, float("nan"), 1.0, 2.9, 0.5, 1.4], start=1):
        assert not watch.diverged(epoch, loss, {"w": epoch})
    assert (watch.best_epoch, watch.best_loss) == (6, 0.5)
    assert watch.diverged(8, 2.1, {"w": 8})            # > 3 x 0.5 and above the start, 2.0
    assert watch.best_state == {"w": 6}


def test_a_nearly_perfect_start_is_not_stopped_by_one_noisy_epoch():
    """An imprinted head starts near loss 0.01; one odd sample can lift an epoch's mean to 0.7.
    That is not divergence for a 3-class classifier (a uniform guess costs ln 3 = 1.1): the
    watch stops only above it."""
    watch = training_watch.LossWatch({"w": 0}, chance_loss=math.log(3))
    watch.first_step(0.012)
    assert not watch.diverged(1, 0.01, {"w": 1})
    assert not watch.diverged(2, 0.7, {"w": 2})          # > 3 x 0.01, above the start, below ln 3
    assert watch.diverged(3, 1.2, {"w": 3})              # and above ln 3
    assert watch.best_state == {"w": 1}
    without_floor = training_watch.LossWatch({"w": 0})
    without_floor.first_step(0.012)
    assert not without_floor.diverged(1, 0.01, {"w": 1})
    assert without_floor.diverged(2, 0.7, {"w": 2})      # the floor is what keeps the run going
