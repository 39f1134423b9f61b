"""Export: a personalized inference-only model equal to the trainable model's infer."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import colour_images, interpreter
from test_cli_helpers import run_cli
from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.export import inference_model
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.errors import CheckpointError


@pytest.fixture(scope="module")
def trained(tiny_model_path, tmp_path_factory):
    model = TransferModel.open(tiny_model_path)
    model.set_learning_rate(1.0)
    images, labels = colour_images(5, seed=1)
    model.add_samples(images, labels)
    model.fit(epochs=10, batch_size=5, progress=False)
    path = tmp_path_factory.mktemp("export") / "trained.ckpt"
    model.save_checkpoint(path)
    return model, str(path)


@pytest.mark.parametrize("xnnpack", [True, False])
def test_export_equals_the_trainable_infer(tiny_model_path, trained, tmp_path, xnnpack):
    model, checkpoint = trained
    output = tmp_path / "personal.tflite"
    inference_model.export_files(tiny_model_path, checkpoint, str(output))
    exported = interpreter(output.read_bytes(), xnnpack=xnnpack)
    assert sorted(exported.get_signature_list()) == ["infer", "load"]
    trainable = interpreter(open(tiny_model_path, "rb").read(), xnnpack=xnnpack)
    trainable.get_signature_runner("restore")(**model.get_state())
    images, _ = colour_images(6, seed=2)
    for key, name in (("infer", "probabilities"), ("load", "bottleneck")):
        ours = exported.get_signature_runner(key)(image=images)[name]
        theirs = trainable.get_signature_runner(key)(image=images)[name]
        if xnnpack and key == "infer":
            # XNNPACK takes over the head's FULLY_CONNECTED once its weights are constants,
            # so the sums round differently (1 ULP); the builtin kernels are bit-exact.
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(ours.argmax(1), theirs.argmax(1))
        else:
            np.testing.assert_array_equal(ours, theirs)
    # Plain invoke() still runs infer.
    assert model_io.signature_subgraph(model_io.read_model_bytes(output.read_bytes()), "infer") == 0


def test_exported_model_has_no_variables_and_builtin_ops_only(tiny_model_path, trained, tmp_path):
    output = tmp_path / "personal.tflite"
    data = inference_model.export_files(tiny_model_path, trained[1], str(output))
    model = model_io.read_model_bytes(data)
    op_types = audit.audit_ops(model).op_types
    for variable_op in ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"):
        assert variable_op not in op_types
    assert op_types["IF"] == 2  # infer and load share the base
    assert len(data) < len(open(tiny_model_path, "rb").read())


def test_export_refuses_a_checkpoint_of_another_model(tiny_model_path, other_model_path, tmp_path):
    other = TransferModel.open(other_model_path)
    other.save_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="another model"):
        inference_model.export_files(tiny_model_path, str(tmp_path / "other.ckpt"), str(tmp_path / "out.tflite"))
    assert not (tmp_path / "out.tflite").exists()


def test_export_from_the_cli(tiny_model_path, trained, tmp_path):
    output = tmp_path / "personal.tflite"
    process = run_cli("export", f"--model={tiny_model_path}", f"--checkpoint={trained[1]}", f"--output={output}")
    assert process.returncode == 0, process.stderr
    assert "signatures infer, load" in process.stdout
    assert sorted(interpreter(output.read_bytes()).get_signature_list()) == ["infer", "load"]
    bad = run_cli("export", f"--model={tiny_model_path}", f"--checkpoint={tmp_path / 'absent.ckpt'}",
                  f"--output={tmp_path / 'x.tflite'}")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("compile-transfer: error:")
