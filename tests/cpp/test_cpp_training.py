"""The C++ library's Fit (runtime/cpp/src/training.h) and the demo's training against the Python
runtime's fit (runtime/SPEC.md#training): a loss that rises without a
NaN is rolled back to the best epoch with a diverged status and one line in Python's words
naming the same stable learning rate; half that rate trains on; a fresh single-layer softmax
head is imprinted first (as Python's imprint, class means weighted by the label rows); 50
epochs of batches of 32 by default. References are computed here with the Python runtime on
the same samples, in sample order (shuffle=False: C++ and Python batches are then the same).
tflite_transfer_fit (runtime/cpp/test/fit_main.cc) drives Fit as an app would and saves the
state it leaves."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.cpp_runtime import assert_one_error_line, epoch_losses, run_demo
from tests.helpers import compile_model
from tests.runtime.test_training_watch import landmark_like
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.checkpoint import read_checkpoint
from tflite_transfer.runtime.errors import TrainingDivergedError

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]\d+)?")


def run_fit(demo: str, model, bottlenecks, labels, tmp_path: Path, *flags, expect_ok: bool = True) -> dict:
    """Fit in C++ on these samples; the JSON line it prints, plus the state it left ('state')."""
    np.save(tmp_path / "fit_bottlenecks.npy", bottlenecks)
    np.save(tmp_path / "fit_labels.npy", labels)
    checkpoint = tmp_path / "fit_after.ckpt"
    result = subprocess.run([str(Path(demo).parent / "tflite_transfer_fit"), str(model), str(tmp_path / "fit_bottlenecks.npy"),
                             str(tmp_path / "fit_labels.npy"), *map(str, flags), "--checkpoint", str(checkpoint)],
                            capture_output=True, text=True, timeout=300)
    if not expect_ok:
        return {"returncode": result.returncode, "stderr": result.stderr}
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout), "state": read_checkpoint(checkpoint).tensors}


def skeleton(message: str) -> tuple[str, list[float]]:
    """The message with its numbers taken out, and the numbers."""
    return NUMBER.sub("#", message), [float(n) for n in NUMBER.findall(message)]


def assert_states_close(actual: dict, expected: dict, tolerance: float) -> None:
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        difference = np.linalg.norm(np.float64(actual[name]) - value) / max(np.linalg.norm(np.float64(value)), 1e-12)
        assert difference <= tolerance, (name, difference)


def python_divergence(model_path: str, bottlenecks, labels, rate: float, epochs: int = 30, batch: int = 8):
    model = TransferModel.open(model_path)
    model.add_bottlenecks(bottlenecks, labels)
    model.set_learning_rate(rate)
    with pytest.raises(TrainingDivergedError) as caught:
        model.fit(epochs=epochs, batch_size=batch, shuffle=False, progress=False, imprint=False)
    return caught.value, model.get_state()


@pytest.mark.parametrize("times_bound", [None, 2000.0], ids=["rate_0.001", "rate_2000x_the_bound"])
def test_a_rising_loss_rolls_back_and_names_the_stable_rate_python_names(cpp_demo, tiny_model_path, tmp_path,
                                                                          times_bound):
    """The Python case (|x|^2 ~ 1e7 at the old default rate 0.001: rolled back to the starting
    weights) and one that diverges later (rolled back to the end of an epoch > 0)."""
    bottlenecks, labels = landmark_like(24, 1e7)
    bound = 4.0 / (1.0 + float((bottlenecks.astype(np.float64) ** 2).sum(1).max()))
    rate = float(np.float32(0.001 if times_bound is None else times_bound * bound))
    error, python_state = python_divergence(tiny_model_path, bottlenecks, labels, rate)
    assert all(np.isfinite(error.losses)), "the watch, not a NaN, stops the reference run"
    got = run_fit(cpp_demo, tiny_model_path, bottlenecks, labels, tmp_path, "--learning_rate", repr(rate),
                  "--epochs", 30, "--batch_size", 8, "--imprint", "never")
    assert got["status"] == "training_diverged" and not got["imprinted"]
    assert got["stable_learning_rate"] == pytest.approx(error.stable_learning_rate, rel=1e-12)
    np.testing.assert_allclose(got["losses"], error.losses, rtol=1e-5)
    # The same line: the same words, the same numbers up to float32 noise in the losses, and the
    # bound, the feature norm and the advice digit for digit.
    shape, numbers = skeleton(got["message"])
    expected_shape, expected_numbers = skeleton(str(error))
    assert shape == expected_shape
    np.testing.assert_allclose(numbers, expected_numbers, rtol=1e-3)
    tail = lambda message: message[message.index("the weights were rolled back"):]  # noqa: E731
    assert tail(got["message"]) == tail(str(error))
    if times_bound is not None:
        assert "rolled back to the end of epoch" in got["message"]
    # Rolled back: the state C++ left is the one Python rolled back to.
    assert_states_close(got["state"], python_state, 1e-5)
    # The demo stops with that line and exit status 1.
    np.save(tmp_path / "b.npy", bottlenecks)
    np.save(tmp_path / "l.npy", labels)
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--bottlenecks", tmp_path / "b.npy", "--labels",
                      tmp_path / "l.npy", "--learning_rate", repr(rate), "--epochs", 30, "--batch_size", 8,
                      "--no_imprint", "--checkpoint", tmp_path / "never.ckpt", expect_ok=False)
    assert assert_one_error_line(result) == "error: " + got["message"]
    np.testing.assert_allclose(epoch_losses(result.stdout), got["losses"], rtol=1e-6)
    assert not (tmp_path / "never.ckpt").exists()


def test_half_the_stable_rate_trains_without_a_stop(cpp_demo, tiny_model_path, tmp_path):
    bottlenecks, labels = landmark_like(24, 1e7, seed=1)
    model = TransferModel.open(tiny_model_path)
    model.add_bottlenecks(bottlenecks, labels)
    rate = float(np.float32(0.5 * model.stable_learning_rate()))
    model.set_learning_rate(rate)
    python_losses = model.fit(epochs=40, batch_size=8, shuffle=False, progress=False, imprint=False)
    got = run_fit(cpp_demo, tiny_model_path, bottlenecks, labels, tmp_path, "--learning_rate", repr(rate),
                  "--epochs", 40, "--batch_size", 8, "--imprint", "never")
    assert got["status"] == "ok" and got["message"] == ""
    np.testing.assert_allclose(got["losses"], python_losses, rtol=1e-4)
    assert got["losses"][-1] < 0.9 * got["losses"][0]
    assert_states_close(got["state"], model.get_state(), 1e-4)


def test_the_bound_follows_the_loss_and_the_momentum_in_the_metadata(cpp_demo, tiny_classifier_path, tiny_pool_name,
                                                                     small_model_path, tmp_path):
    """mean squared error over k outputs with heavy-ball momentum: (1 + beta) k / (1 + max |x|^2),
    as Python computes it; Adam has none."""
    compiled = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=2, loss="mse", optimizer="momentum",
                             momentum=0.5, learning_rate=0.01)
    path = tmp_path / "mse_momentum.tflite"
    path.write_bytes(compiled.model_bytes)
    rng = np.random.default_rng(2)
    bottlenecks = rng.normal(size=(6, 7)).astype(np.float32) * 3
    targets = rng.normal(size=(6, 2)).astype(np.float32)
    model = TransferModel.open(str(path))
    model.add_bottlenecks(bottlenecks, targets)
    expected = model.stable_learning_rate()
    largest = float((bottlenecks.astype(np.float64) ** 2).sum(1).max())
    assert expected == pytest.approx(1.5 * 2 / (1 + largest), rel=1e-12)
    python_losses = model.fit(epochs=3, batch_size=6, shuffle=False, progress=False)   # trains on: no stop
    got = run_fit(cpp_demo, path, bottlenecks, targets, tmp_path, "--epochs", 3, "--batch_size", 6)
    assert got["stable_learning_rate"] == pytest.approx(expected, rel=1e-12)
    assert got["status"] == "ok" and not got["imprinted"], got["message"]   # an MSE head is never imprinted
    np.testing.assert_allclose(got["losses"], python_losses, rtol=1e-5)
    adam = run_fit(cpp_demo, small_model_path, np.ones((4, 1280), np.float32), np.arange(4), tmp_path, "--epochs", 1,
                   "--imprint", "never")
    assert adam["stable_learning_rate"] is None
    refused = run_fit(cpp_demo, small_model_path, np.ones((4, 1280), np.float32), np.arange(4), tmp_path,
                      "--epochs", 1, "--imprint", "always", expect_ok=False)
    assert refused["returncode"] == 1 and "needs a single-layer softmax head" in refused["stderr"]


def separable(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int32) % 3
    bottlenecks = rng.normal(size=(count, 7)).astype(np.float32) * 0.3
    bottlenecks[np.arange(count), labels] += 2.0
    return bottlenecks, labels


def test_imprint_matches_python_and_fit_imprints_a_fresh_head_first(cpp_demo, tiny_model_path, tmp_path):
    bottlenecks, labels = separable(9)
    python = TransferModel.open(tiny_model_path)
    python.add_bottlenecks(bottlenecks, labels)
    python.imprint()
    imprinted = run_fit(cpp_demo, tiny_model_path, bottlenecks, labels, tmp_path, "--imprint", "only")
    assert_states_close(imprinted["state"], python.get_state(), 1e-6)
    # fit by default: imprint, then train, as Python's fit() with its default imprint=None.
    fresh = TransferModel.open(tiny_model_path)
    fresh.add_bottlenecks(bottlenecks, labels)
    python_losses = fresh.fit(epochs=3, batch_size=4, shuffle=False, progress=False)
    got = run_fit(cpp_demo, tiny_model_path, bottlenecks, labels, tmp_path, "--epochs", 3, "--batch_size", 4)
    assert got["imprinted"] and got["status"] == "ok"
    np.testing.assert_allclose(got["losses"], python_losses, rtol=1e-5)
    assert_states_close(got["state"], fresh.get_state(), 1e-5)
    never = run_fit(cpp_demo, tiny_model_path, bottlenecks, labels, tmp_path, "--epochs", 3, "--batch_size", 4,
                    "--imprint", "never")
    assert not never["imprinted"] and never["losses"][0] > 2 * got["losses"][0]   # imprinting gave the head a start


def test_the_demo_imprints_only_a_fresh_head_and_trains_50_epochs_of_32_by_default(cpp_demo, tiny_model_path, tmp_path):
    bottlenecks, labels = separable(40, seed=3)
    np.save(tmp_path / "b.npy", bottlenecks)
    np.save(tmp_path / "l.npy", labels)
    common = ["--model", tiny_model_path, "--bottlenecks", tmp_path / "b.npy", "--labels", tmp_path / "l.npy"]
    result = run_demo(cpp_demo, *common, "--checkpoint", tmp_path / "trained.ckpt")
    assert "imprinted the head from 40 samples" in result.stdout
    assert len(epoch_losses(result.stdout)) == 50
    assert int(read_checkpoint(tmp_path / "trained.ckpt").tensors["step"][0]) == 50 * 2   # ceil(40 / 32) steps each
    again = run_demo(cpp_demo, *common, "--restore", tmp_path / "trained.ckpt", "--epochs", 1)
    assert "imprinted" not in again.stdout                         # trained weights are not fresh
    rewound = run_demo(cpp_demo, *common, "--restore", tmp_path / "trained.ckpt", "--initialize", "--epochs", 1)
    assert "imprinted the head" in rewound.stdout                  # initialize: the compiled weights again
    plain = run_demo(cpp_demo, *common, "--epochs", 1, "--no_imprint")
    assert "imprinted" not in plain.stdout
    # A NaN loss still stops training with one line (rolled back; Python's words).
    np.save(tmp_path / "huge.npy", np.full((4, 7), 3e38, np.float32))
    np.save(tmp_path / "l4.npy", np.array([0, 1, 2, 0]))
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--bottlenecks", tmp_path / "huge.npy", "--labels",
                      tmp_path / "l4.npy", "--epochs", 3, "--learning_rate", 1e6, "--no_imprint", expect_ok=False)
    assert_one_error_line(result, "training diverged in epoch 1: the loss became", "rolled back to the end of the last "
                          "good epoch", "lower the learning rate (set_learning_rate")


def test_an_imprinted_start_is_not_stopped_by_one_noisy_epoch(cpp_demo, tiny_model_path, tmp_path):
    """The watch stops a classifier only above a uniform guess's loss (ln K): an imprinted head
    starts near its best, and one odd sample lifts the first epoch's mean past 3x the first step's
    loss without any divergence."""
    bottlenecks, labels = separable(12)
    labels[5] = (labels[5] + 1) % 3                                 # the odd sample, in the second batch
    python = TransferModel.open(tiny_model_path)
    python.add_bottlenecks(bottlenecks, labels)
    python.imprint()
    state = python.get_state()
    logits = bottlenecks[:4].astype(np.float64) @ state["dense_0_kernel"].T.astype(np.float64) + state["dense_0_bias"]
    logits -= logits.max(1, keepdims=True)
    first_step = float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(4), labels[:4]]))
    fresh = TransferModel.open(tiny_model_path)
    fresh.add_bottlenecks(bottlenecks, labels)
    python_losses = fresh.fit(epochs=10, batch_size=4, shuffle=False, progress=False)
    got = run_fit(cpp_demo, tiny_model_path, bottlenecks, labels, tmp_path, "--epochs", 10, "--batch_size", 4)
    assert got["imprinted"] and got["status"] == "ok", got["message"]
    np.testing.assert_allclose(got["losses"], python_losses, rtol=1e-5)
    assert 3 * first_step < got["losses"][0] < np.log(3)            # only the ln K floor keeps it going
