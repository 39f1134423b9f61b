"""Contract version 3 in the C++ runtime (BUILD.md, "What a reader of version 3 does"): a model
compiled as TensorFlow's example app calls it (`--names=tf_example_app --input_range=0,1
--label_format=one_hot`: input `feature` in [0, 1], output `output`, one-hot labels) runs in
the demo by its own names, checks the input's range naming the input, takes one-hot (and soft)
label rows and refuses bad ones each with its own line, and imprints with class means weighted
by the label rows. References: the Python runtime on the same model and samples."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.cpp_runtime import assert_one_error_line, epoch_losses, run_demo
from tests.helpers import colour_images, compile_model
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.checkpoint import read_checkpoint
from tflite_transfer.runtime.errors import InvalidInputError

APP_INTERFACE = {"names": "tf_example_app", "input_range": "0,1", "label_format": "one_hot"}


@pytest.fixture(scope="module")
def app_model(tiny_classifier_path, tiny_pool_name, tmp_path_factory) -> str:
    compiled = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                             labels=("red", "green", "blue"), interface=APP_INTERFACE)
    path = tmp_path_factory.mktemp("v3_cpp") / "app.tflite"
    path.write_bytes(compiled.model_bytes)
    return str(path)


@pytest.fixture(scope="module")
def app_samples():
    images, labels = colour_images(3, seed=8)        # 9 images, 3 colour classes
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


def test_the_model_runs_by_its_own_names_and_input_range(cpp_demo, app_model, app_samples, tmp_path):
    inputs, _ = app_samples
    python = TransferModel.open(app_model)
    described = json.loads(run_demo(cpp_demo, "--check_model", "--model", app_model).stdout)
    assert described["contract_version"] == 3
    assert described["names"] == {"input": "feature", "bottleneck": "bottleneck", "label": "label", "loss": "loss",
                                  "output": "output"}
    assert described["model_input"] == {"kind": "image", "dtype": "float32", "shape": [16, 12, 3], "range": [0.0, 1.0],
                                        "base_range": [0.0, 255.0]}
    assert described["signatures"]["train"] == {"inputs": ["bottleneck", "label"], "outputs": ["loss"]}
    np.save(tmp_path / "inputs.npy", inputs)
    result = run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "inputs.npy", "--epochs", 0,
                      "--save_bottlenecks", tmp_path / "bottlenecks.npy")
    assert "image 'feature' float32 [16, 12, 3], values in [0, 1]" in result.stdout and "one_hot labels" in result.stdout
    # The int8 base rounds some values one quantization step apart between TFLite 2.14 and LiteRT.
    np.testing.assert_allclose(np.load(tmp_path / "bottlenecks.npy"), python.load(inputs), rtol=0, atol=1.5e-3)
    # 0..255 pixels are outside what this model takes: refused naming the input and its range.
    pixels = inputs * 255
    np.save(tmp_path / "pixels.npy", pixels)
    result = run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "pixels.npy", "--epochs", 0, expect_ok=False)
    with pytest.raises(InvalidInputError) as python_refusal:
        python.predict(pixels)
    assert str(python_refusal.value).startswith("feature: values span [0, ")
    assert assert_one_error_line(result) == f"error: {python_refusal.value}"     # Python's line, word for word
    # Any numeric dtype for a float input (uint8 0/1 values converted), one sample without a batch axis too.
    np.save(tmp_path / "uint8.npy", (inputs > 0.5).astype(np.uint8))
    run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "uint8.npy", "--epochs", 0)
    np.save(tmp_path / "one.npy", inputs[0])
    run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "one.npy", "--epochs", 0,
             "--save_bottlenecks", tmp_path / "one_bottleneck.npy")
    assert np.load(tmp_path / "one_bottleneck.npy").shape == (1, 7)


def run_fit(demo, model, bottlenecks, labels, tmp_path, *flags) -> dict:
    np.save(tmp_path / "fb.npy", bottlenecks)
    np.save(tmp_path / "fl.npy", labels)
    result = subprocess.run([str(Path(demo).parent / "tflite_transfer_fit"), str(model), str(tmp_path / "fb.npy"),
                             str(tmp_path / "fl.npy"), *map(str, flags), "--checkpoint", str(tmp_path / "fit.ckpt")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout), "state": read_checkpoint(tmp_path / "fit.ckpt").tensors}


def test_one_hot_rows_train_as_in_python_and_imprint_weighs_soft_rows(cpp_demo, app_model, app_samples, tmp_path):
    inputs, ids = app_samples
    python = TransferModel.open(app_model)
    bottlenecks = python.load(inputs)
    soft = np.full((len(ids), 3), 0.05, np.float32)
    soft[np.arange(len(ids)), ids] = 0.9
    python.add_bottlenecks(bottlenecks, soft)
    python.imprint()
    imprinted = run_fit(cpp_demo, app_model, bottlenecks, soft, tmp_path, "--imprint", "only")
    for name in ("dense_0_kernel", "dense_0_bias"):
        np.testing.assert_allclose(imprinted["state"][name], python.get_state()[name], rtol=1e-6, atol=1e-6,
                                   err_msg=name)
    hard = TransferModel.open(app_model)
    hard.add_bottlenecks(bottlenecks, ids)                          # class ids: encoded as one-hot rows
    hard.imprint()
    assert not np.allclose(hard.get_state()["dense_0_kernel"], python.get_state()["dense_0_kernel"])
    # Training on soft rows, from the imprinted head, as Python's fit.
    trainer = TransferModel.open(app_model)
    trainer.add_bottlenecks(bottlenecks, soft)
    python_losses = trainer.fit(epochs=4, batch_size=4, shuffle=False, progress=False)
    got = run_fit(cpp_demo, app_model, bottlenecks, soft, tmp_path, "--epochs", 4, "--batch_size", 4)
    assert got["imprinted"] and got["status"] == "ok"
    np.testing.assert_allclose(got["losses"], python_losses, rtol=1e-5)
    for name, value in trainer.get_state().items():
        np.testing.assert_allclose(got["state"][name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_the_demo_encodes_class_ids_and_refuses_bad_rows_each_with_its_own_line(cpp_demo, app_model, app_samples,
                                                                                 tmp_path):
    inputs, ids = app_samples
    np.save(tmp_path / "inputs.npy", inputs)
    np.save(tmp_path / "ids.npy", ids)
    result = run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "inputs.npy", "--labels",
                      tmp_path / "ids.npy", "--epochs", 3, "--batch_size", 4, "--no_imprint", "--learning_rate", 0.5)
    python = TransferModel.open(app_model)
    python.set_learning_rate(0.5)
    np.save(tmp_path / "rows.npy", np.eye(3, dtype=np.float32)[ids])
    python.add_samples(inputs, np.eye(3, dtype=np.float32)[ids])
    # load differs by a quantization step between the runtimes: the losses to that precision.
    np.testing.assert_allclose(epoch_losses(result.stdout),
                               python.fit(epochs=3, batch_size=4, shuffle=False, progress=False, imprint=False),
                               rtol=2e-3)
    assert f"/{len(ids)})" in result.stdout                          # accuracy over the one-hot rows' classes
    rows_result = run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "inputs.npy", "--labels",
                           tmp_path / "rows.npy", "--epochs", 3, "--batch_size", 4, "--no_imprint",
                           "--learning_rate", 0.5)
    assert epoch_losses(rows_result.stdout) == epoch_losses(result.stdout)   # ids are exactly one-hot rows
    bad = {"negative": ([1.5, -0.5, 0.0], "label: row 0 has -0.5 at class 1; one-hot and soft targets are >= 0"),
           "sum": ([0.5, 0.49, 0.0], "label: row 0 sums to 0.99; one-hot and soft targets sum to 1 (within 0.001)"),
           "nan": ([np.nan, 1.0, 0.0], "label: contains NaN or Inf")}
    for name, (row, message) in bad.items():
        rows = np.eye(3, dtype=np.float32)[ids]
        rows[0] = row
        np.save(tmp_path / f"{name}.npy", rows)
        result = run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "inputs.npy", "--labels",
                          tmp_path / f"{name}.npy", "--epochs", 1, "--checkpoint", tmp_path / "never.ckpt",
                          expect_ok=False)
        assert assert_one_error_line(result) == "error: " + message
        assert "epoch" not in result.stdout and not (tmp_path / "never.ckpt").exists()
    np.save(tmp_path / "out_of_range.npy", np.full(len(ids), 3))
    result = run_demo(cpp_demo, "--model", app_model, "--images", tmp_path / "inputs.npy", "--labels",
                      tmp_path / "out_of_range.npy", "--epochs", 1, expect_ok=False)
    assert_one_error_line(result, "label 3 is outside [0, 3)")
