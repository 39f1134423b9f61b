"""The C++ runtime (runtime/cpp/) against Debian's stock libtensorflow-lite 2.14: built by
runtime/cpp/setup_testing_root.sh, driven through its demo, checked against the Python runtime.

Checkpoints must cross between the two runtimes bit for bit (and, for the same state and
metadata, the files are byte-identical). Training is compared on the same bottlenecks: the
int8 base itself differs by one quantization step in some bottleneck values between TFLite
2.14 and LiteRT 2.x (different rounding in the int8 kernels), so `load` is compared to that
tolerance.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tests.helpers import colour_images
from tests.fixtures.cpp_runtime import assert_same_bits, epoch_losses, run_demo
from tflite_transfer.runtime import TransferModel, contract
from tflite_transfer.runtime.checkpoint import read_checkpoint, write_checkpoint

@pytest.fixture()
def training_files(tmp_path):
    images, labels = colour_images(8, seed=0)
    test_images, test_labels = colour_images(10, seed=1)
    files = {"images": tmp_path / "images.npy", "labels": tmp_path / "labels.npy",
             "test_images": tmp_path / "test_images.npy", "test_labels": tmp_path / "test_labels.npy"}
    for key, value in [("images", images), ("labels", labels.astype(np.int64)),
                       ("test_images", test_images), ("test_labels", test_labels)]:
        np.save(files[key], value)
    return files


def test_training_lowers_the_loss_and_learns(cpp_demo, tiny_model_path, training_files, tmp_path):
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--images", training_files["images"],
                      "--labels", training_files["labels"], "--test_images", training_files["test_images"],
                      "--test_labels", training_files["test_labels"], "--epochs", 30, "--batch_size", 8,
                      "--learning_rate", 1.0, "--no_imprint", "--checkpoint", tmp_path / "trained.ckpt")
    assert "TFLite 2.14" in result.stdout
    losses = epoch_losses(result.stdout)
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]
    accuracy = float(re.search(r"^accuracy (\S+)", result.stdout, re.M).group(1))
    assert accuracy >= 0.9  # chance is 1/3
    assert int(read_checkpoint(tmp_path / "trained.ckpt").tensors["step"][0]) == 30 * 3


def test_train_images_signature_lowers_the_loss(cpp_demo, tiny_model_path, training_files):
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--images", training_files["images"],
                      "--labels", training_files["labels"], "--train_on", "images", "--epochs", 15,
                      "--learning_rate", 1.0)
    losses = epoch_losses(result.stdout)
    assert losses[-1] < losses[0]


def test_load_agrees_with_python_to_one_quantization_step(cpp_demo, tiny_model_path, training_files, tmp_path):
    run_demo(cpp_demo, "--model", tiny_model_path, "--images", training_files["images"], "--epochs", 0,
             "--save_bottlenecks", tmp_path / "bottlenecks.npy")
    cpp_bottlenecks = np.load(tmp_path / "bottlenecks.npy")
    python_bottlenecks = TransferModel.open(tiny_model_path).load(np.load(training_files["images"]))
    assert cpp_bottlenecks.dtype == np.float32 and cpp_bottlenecks.shape == python_bottlenecks.shape
    # The tiny base's bottleneck is int8 with scale ~1e-3; 2.14 and LiteRT 2.x round some
    # values to neighbouring steps.
    np.testing.assert_allclose(cpp_bottlenecks, python_bottlenecks, rtol=0, atol=1.5e-3)


def test_training_matches_python_on_the_same_bottlenecks(cpp_demo, tiny_model_path, training_files, tmp_path):
    python_model = TransferModel.open(tiny_model_path)
    python_model.set_learning_rate(1.0)
    bottlenecks = python_model.load(np.load(training_files["images"]))
    labels = np.load(training_files["labels"])
    np.save(tmp_path / "bottlenecks.npy", bottlenecks)
    python_model.add_bottlenecks(bottlenecks, labels)
    python_losses = python_model.fit(epochs=10, batch_size=8, shuffle=False, progress=False, imprint=False)
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--bottlenecks", tmp_path / "bottlenecks.npy",
                      "--labels", training_files["labels"], "--epochs", 10, "--batch_size", 8,
                      "--learning_rate", 1.0, "--no_imprint", "--checkpoint", tmp_path / "cpp.ckpt")
    np.testing.assert_allclose(epoch_losses(result.stdout), python_losses, rtol=1e-5)
    cpp_state = read_checkpoint(tmp_path / "cpp.ckpt").tensors
    for name, value in python_model.get_state().items():
        # Norm-wise relative difference (summation order of XNNPACK vs the builtin kernels).
        difference = np.linalg.norm(np.float64(cpp_state[name]) - value) / max(np.linalg.norm(value), 1e-12)
        assert difference < 1e-5, name


def test_python_checkpoint_restores_bit_for_bit_in_cpp(cpp_demo, tiny_model_path, tmp_path):
    python_model = TransferModel.open(tiny_model_path)
    python_model.set_learning_rate(0.5)
    images, labels = colour_images(4, seed=5)
    for _ in range(3):
        python_model.train_step(images, labels)
    python_model.save_checkpoint(tmp_path / "python.ckpt")  # no samples cached: num_samples_cached "0"
    run_demo(cpp_demo, "--model", tiny_model_path, "--restore", tmp_path / "python.ckpt", "--epochs", 0,
             "--checkpoint", tmp_path / "cpp.ckpt")
    # C++ restored the file into the interpreter and `save` gave back every bit.
    assert_same_bits(read_checkpoint(tmp_path / "cpp.ckpt").tensors, python_model.get_state())
    assert (tmp_path / "cpp.ckpt").read_bytes() == (tmp_path / "python.ckpt").read_bytes()


def test_cpp_checkpoint_restores_bit_for_bit_in_python(cpp_demo, tiny_model_path, training_files, tmp_path):
    run_demo(cpp_demo, "--model", tiny_model_path, "--images", training_files["images"], "--labels",
             training_files["labels"], "--epochs", 4, "--learning_rate", 0.7,
             "--checkpoint", tmp_path / "cpp.ckpt")
    saved = read_checkpoint(tmp_path / "cpp.ckpt")
    assert saved.metadata["num_samples_cached"] == "24"
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    assert_same_bits(safetensors_numpy.load_file(tmp_path / "cpp.ckpt"), saved.tensors)

    python_model = TransferModel.open(tiny_model_path)
    python_model.restore_checkpoint(tmp_path / "cpp.ckpt")
    assert_same_bits(python_model.get_state(), saved.tensors)
    assert float(saved.tensors["learning_rate"][0]) == np.float32(0.7)
    write_checkpoint(tmp_path / "python.ckpt", python_model.get_state(), python_model.metadata.fingerprint,
                     {"num_samples_cached": "24"})
    assert (tmp_path / "python.ckpt").read_bytes() == (tmp_path / "cpp.ckpt").read_bytes()


def test_initialize_returns_to_the_compiled_weights(cpp_demo, tiny_model_path, training_files, tmp_path):
    run_demo(cpp_demo, "--model", tiny_model_path, "--images", training_files["images"], "--labels",
             training_files["labels"], "--epochs", 2, "--checkpoint", tmp_path / "trained.ckpt")
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--restore", tmp_path / "trained.ckpt",
                      "--initialize", "--epochs", 0, "--checkpoint", tmp_path / "initial.ckpt")
    assert "initialized (step 0)" in result.stdout
    assert_same_bits(read_checkpoint(tmp_path / "initial.ckpt").tensors,
                     TransferModel.open(tiny_model_path).get_state())


def test_bad_checkpoints_give_one_clear_line_and_change_nothing(cpp_demo, tiny_model_path, other_model_path,
                                                                 tmp_path):
    other = TransferModel.open(other_model_path)
    other.save_checkpoint(tmp_path / "other.ckpt")
    good = tmp_path / "good.ckpt"
    TransferModel.open(tiny_model_path).save_checkpoint(good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:-5])
    tiny = TransferModel.open(tiny_model_path)
    state = tiny.get_state()
    state["dense_0_kernel"] = state["dense_0_kernel"].T.copy()
    reshaped = tmp_path / "reshaped.ckpt"
    write_checkpoint(reshaped, state, tiny.metadata.fingerprint)
    output = tmp_path / "out.ckpt"
    output.write_bytes(b"previous checkpoint")
    for path, message in [(tmp_path / "other.ckpt", "written by another model"),
                          (truncated, "corrupt or incomplete"),
                          (reshaped, "'dense_0_kernel' is [7, 3] float32 in the checkpoint but [3, 7]"),
                          (tmp_path / "absent.ckpt", "does not exist")]:
        result = run_demo(cpp_demo, "--model", tiny_model_path, "--restore", path, "--epochs", 0,
                          "--checkpoint", output, expect_ok=False)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: checkpoint " + str(path)), result.stderr
        assert message in lines[0]
        assert output.read_bytes() == b"previous checkpoint"
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["other.ckpt", "good.ckpt", "truncated.ckpt", "reshaped.ckpt", "out.ckpt"])  # no temp files


def test_a_model_missing_a_signature_is_refused(cpp_demo, tiny_fused, tiny_classifier_path, tmp_path):
    from tflite_transfer.compiler.flatbuffer import model_io

    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    model.signatureDefs = [s for s in model.signatureDefs if s.signatureKey != b"restore"]
    path = tmp_path / "no_restore.tflite"
    edited = model_io.write_model_bytes(model)
    # An edited model needs a fresh digest (a contract-version-2 model would be refused as damaged).
    path.write_bytes(contract.stamp_digest(edited) if contract.find_digest(edited) else edited)
    result = run_demo(cpp_demo, "--model", path, "--epochs", 0, expect_ok=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {path}: not a tflite-transfer model: missing signature(s) restore"

    result = run_demo(cpp_demo, "--model", tiny_classifier_path, "--epochs", 0, expect_ok=False)
    assert result.returncode == 1 and "no 'tflite_transfer' metadata" in result.stderr


def test_bad_inputs_and_flags(cpp_demo, tiny_model_path, training_files, tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    result = run_demo(cpp_demo, "--model", junk, "--epochs", 0, expect_ok=False)
    assert result.returncode == 1 and "not a TFLite model" in result.stderr
    np.save(tmp_path / "bad_labels.npy", np.full(24, 3))
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--images", training_files["images"],
                      "--labels", tmp_path / "bad_labels.npy", "--epochs", 1, expect_ok=False)
    assert result.returncode == 1 and "label 3 is outside [0, 3)" in result.stderr
    result = run_demo(cpp_demo, "--model", tiny_model_path, "--no_such_flag", 1, expect_ok=False)
    assert result.returncode == 2 and "unknown flag --no_such_flag" in result.stderr
    assert "usage: tflite_transfer_demo" in run_demo(cpp_demo, "--help").stdout


def test_the_small_mobilenet_model_loads_and_trains(cpp_demo, small_model_path, tmp_path):
    """Every op (and op version) of a MobileNetV2 + MLP/Adam model loads in TFLite 2.14."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", (rng.random((4, 96, 96, 3)) * 255).astype(np.float32))
    np.save(tmp_path / "labels.npy", np.arange(4, dtype=np.int32))
    result = run_demo(cpp_demo, "--model", small_model_path, "--images", tmp_path / "images.npy",
                      "--labels", tmp_path / "labels.npy", "--epochs", 2, "--learning_rate", 0.001,
                      "--checkpoint", tmp_path / "s.ckpt")
    assert len(epoch_losses(result.stdout)) == 2
    python_model = TransferModel.open(small_model_path)
    python_model.restore_checkpoint(tmp_path / "s.ckpt")
    assert_same_bits(python_model.get_state(), read_checkpoint(tmp_path / "s.ckpt").tensors)
