"""Export: a single-subgraph inference model equal to the trainable model's infer, with
standard TFLite Metadata; the checkpoint checked exactly as restore checks it."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from tests.helpers import colour_images, compile_model, interpreter
from test_cli_helpers import run_cli
from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.errors import TransferError, UnsupportedModelError
from tflite_transfer.compiler.export import inference_model, tflite_metadata
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.runtime import InferenceModel, TransferModel, contract
from tflite_transfer.runtime import checkpoint as checkpoint_file
from tflite_transfer.runtime.errors import CheckpointError, UnsupportedModelError as RuntimeUnsupported

# With XNNPACK (LiteRT's default) the exported FULLY_CONNECTED reads constant weights, which
# XNNPACK takes over and sums in another order than the builtin kernel the trainable model runs
# on variables. BUILD.md ("Export") states the bound and the figures measured on the default
# model (python -m benchmarks.export); with the builtin kernels the two are bit for bit equal.
XNNPACK_ABS_TOLERANCE = 1e-3


def _train(model: TransferModel, stage: str, learning_rate: float = 1.0) -> None:
    images, labels = colour_images(5, seed=1)
    model.add_samples(images, labels)
    if stage == "imprint":
        model.imprint()
    else:
        model.set_learning_rate(learning_rate)
        model.fit(epochs=10, batch_size=5, progress=False)


@pytest.fixture(scope="module", params=["imprint", "fit"])
def trained(request, tiny_model_path, tmp_path_factory):
    model = TransferModel.open(tiny_model_path)
    _train(model, request.param)
    path = tmp_path_factory.mktemp("export") / f"{request.param}.ckpt"
    model.save_checkpoint(path)
    return model, str(path)


@pytest.fixture(scope="module")
def fitted(tiny_model_path, tmp_path_factory):
    """One trained state, for the tests that need any (precision is checked after both)."""
    model = TransferModel.open(tiny_model_path)
    _train(model, "fit")
    path = tmp_path_factory.mktemp("export") / "fitted.ckpt"
    model.save_checkpoint(path)
    return model, str(path)


def _infer_both(exported: bytes, trainable_bytes: bytes, state: dict, images: np.ndarray, xnnpack: bool,
                output: str = "probabilities"):
    trainable = interpreter(trainable_bytes, xnnpack=xnnpack)
    trainable.get_signature_runner("restore")(**state)
    ours = interpreter(exported, xnnpack=xnnpack).get_signature_runner("infer")
    return ours(image=images)[output], trainable.get_signature_runner("infer")(image=images)[output]


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "builtin"])
def test_export_equals_the_trainable_infer(tiny_model_path, trained, tmp_path, xnnpack):
    model, checkpoint = trained
    output = tmp_path / "personal.tflite"
    exported = inference_model.export_files(tiny_model_path, checkpoint, str(output))
    images, _ = colour_images(6, seed=2)
    for batch in (1, 6):
        ours, theirs = _infer_both(exported, open(tiny_model_path, "rb").read(), model.get_state(),
                                   images[:batch], xnnpack)
        if xnnpack:
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=XNNPACK_ABS_TOLERANCE)
        else:
            np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(InferenceModel.open(str(output)).predict(images).argmax(1),
                                  model.predict(images).argmax(1))


def test_export_is_one_subgraph_with_infer_alone_and_task_metadata(tiny_model_path, fitted, tmp_path):
    output = tmp_path / "personal.tflite"
    data = inference_model.export_files(tiny_model_path, fitted[1], str(output))
    model = model_io.read_model_bytes(data)
    assert len(model.subgraphs) == 1
    assert [s.signatureKey.decode() for s in model.signatureDefs] == ["infer"]
    op_types = audit.audit_ops(model).op_types
    for gone in ("IF", "CALL", "CALL_ONCE", "WHILE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"):
        assert gone not in op_types
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(op_types)   # base and head inlined
    assert len(data) < len(open(tiny_model_path, "rb").read())
    # The contract record (no training state, a valid digest) and TFLITE_METADATA.
    assert contract.digest_matches(data) is True
    assert graph.get_metadata(model, tflite_metadata.METADATA_NAME)[4:8] == b"M001"
    labels = zipfile.ZipFile(io.BytesIO(data)).read(inference_model.LABELS_FILE).decode()
    assert labels.splitlines() == [str(i) for i in range(3)]   # the tiny model has no label names
    # A quantized (uint8) input takes raw pixels: no normalization, range 0-255.
    image = tflite_metadata.read_image_input(graph.get_metadata(model, tflite_metadata.METADATA_NAME))
    assert image.name == "image" and image.mean is None and image.value_range == (0.0, 255.0)


def test_an_mlp_heads_batch_dispatch_is_inlined_exactly(tiny_classifier_path, tiny_pool_name, tmp_path):
    """An MLP layer of >= 32 units chooses BATCH_MATMUL or FULLY_CONNECTED by the batch (an IF
    whose branches read the kernel variable): the export keeps the FULLY_CONNECTED branch."""
    result = compile_model(tiny_classifier_path, tiny_pool_name, head="mlp:40", num_classes=3,
                           optimizer="adam", learning_rate=0.01, labels=("cat", "dog", "owl"))
    fused = model_io.read_model_bytes(result.model_bytes)
    assert audit.audit_ops(fused).op_types["BATCH_MATMUL"] >= 1
    (tmp_path / "mlp.tflite").write_bytes(result.model_bytes)
    model = TransferModel.open(result.model_bytes)
    _train(model, "fit", learning_rate=0.01)  # Adam: 1.0 diverges (fit would roll back and say so)
    model.save_checkpoint(tmp_path / "mlp.ckpt")
    exported = inference_model.export_files(str(tmp_path / "mlp.tflite"), str(tmp_path / "mlp.ckpt"),
                                            str(tmp_path / "out.tflite"))
    op_types = audit.audit_ops(model_io.read_model_bytes(exported)).op_types
    assert "BATCH_MATMUL" not in op_types and "IF" not in op_types
    images, _ = colour_images(4, seed=5)
    for batch in (1, 4):
        ours, theirs = _infer_both(exported, result.model_bytes, model.get_state(), images[:batch], xnnpack=False)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6 if batch > 1 else 0)
    assert InferenceModel.open(exported).labels == ["cat", "dog", "owl"]
    assert zipfile.ZipFile(io.BytesIO(exported)).read("labels.txt") == b"cat\ndog\nowl\n"


# One validation for restore and export.
def _damaged_states(model: TransferModel) -> dict[str, dict]:
    state = model.get_state()
    kernel = model.metadata.entries_with_role(contract.KERNEL)[0].name
    rate = model.metadata.entries_with_role(contract.LEARNING_RATE)[0].name
    step = model.metadata.entries_with_role(contract.STEP)[0].name
    nan = {**state, kernel: np.where(np.arange(state[kernel].size).reshape(state[kernel].shape) == 0,
                                     np.float32(np.nan), state[kernel]).astype(np.float32)}
    infinite = {**state, kernel: np.full_like(state[kernel], np.inf)}
    return {"NaN weight": nan, "infinite weights": infinite,
            "learning rate 0": {**state, rate: np.zeros_like(state[rate])},
            "negative step": {**state, step: np.full_like(state[step], -1)}}


@pytest.mark.parametrize("damage", ["NaN weight", "infinite weights", "learning rate 0", "negative step"])
def test_export_refuses_exactly_what_restore_refuses(tiny_model_path, tmp_path, damage):
    model = TransferModel.open(tiny_model_path)
    state = _damaged_states(model)[damage]
    path = tmp_path / "damaged.ckpt"
    checkpoint_file.write_checkpoint(path, state, model.metadata.fingerprint)  # a valid checksum
    before = model.get_state()
    with pytest.raises(CheckpointError) as restore_refused:
        model.restore_checkpoint(path)
    for name, value in model.get_state().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(CheckpointError) as export_refused:
        inference_model.export_files(tiny_model_path, str(path), str(tmp_path / "out.tflite"))
    assert str(export_refused.value) == str(restore_refused.value)
    assert not (tmp_path / "out.tflite").exists()
    # The API that takes a state dict applies the same checks, with the same words.
    with pytest.raises(TransferError) as api_refused:
        inference_model.export_inference_model(open(tiny_model_path, "rb").read(), state)
    problem = str(restore_refused.value).split(f"{path}: ", 1)[1]
    assert str(api_refused.value) == f"model: {problem}"


def test_export_refuses_a_checkpoint_of_another_model(tiny_model_path, other_model_path, tmp_path):
    other = TransferModel.open(other_model_path)
    other.save_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="another model"):
        inference_model.export_files(tiny_model_path, str(tmp_path / "other.ckpt"), str(tmp_path / "out.tflite"))
    assert not (tmp_path / "out.tflite").exists()


def test_a_stateful_base_is_refused_in_one_line(tiny_model_path):
    """A base that keeps its own resource variables: export cannot bake values the checkpoint
    does not hold, so it refuses (one line naming the variable) instead of freezing them."""
    data = open(tiny_model_path, "rb").read()
    model = model_io.read_model_bytes(data)
    infer = model_io.signature_subgraph(model, contract.INFER)
    base = next(model_io.called_subgraphs(op)[0] for op in model.subgraphs[infer].operators
                if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "IF")
    editor, subgraph = graph.GraphEditor(model), model.subgraphs[base]
    handle = editor.tensor(subgraph, "base_state", TensorType.RESOURCE, [])
    value = editor.tensor(subgraph, "base_state/read", TensorType.FLOAT32, [3])
    editor.op(subgraph, BuiltinOperator.VAR_HANDLE, 1, [], [handle],
              graph.options("VarHandleOptions", container=b"", sharedName=b"running_mean"), position=0)
    editor.op(subgraph, BuiltinOperator.READ_VARIABLE, 1, [handle], [value], position=1)
    stateful = model_io.write_model_bytes(model)
    state = TransferModel.open(tiny_model_path).get_state()
    with pytest.raises(UnsupportedModelError, match=r"variable 'running_mean' is the base's own state.*"
                       "cannot export a model over a stateful base") as refused:
        inference_model.export_inference_model(stateful, state, "stateful.tflite")
    assert "\n" not in str(refused.value)


def test_the_runtimes_name_each_other(tiny_model_path, fitted, tmp_path):
    output = tmp_path / "personal.tflite"
    inference_model.export_files(tiny_model_path, fitted[1], str(output))
    with pytest.raises(RuntimeUnsupported, match="exported inference-only model.*InferenceModel.open"):
        TransferModel.open(str(output))
    with pytest.raises(RuntimeUnsupported, match="a trainable model.*TransferModel.open"):
        InferenceModel.open(tiny_model_path)
    with pytest.raises(TransferError, match="not a trainable tflite-transfer model"):
        inference_model.export_inference_model(output.read_bytes(), {})


def test_export_from_the_cli(tiny_model_path, fitted, tmp_path):
    output = tmp_path / "personal.tflite"
    process = run_cli("export", f"--model={tiny_model_path}", f"--checkpoint={fitted[1]}", f"--output={output}")
    assert process.returncode == 0, process.stderr
    assert "one subgraph, signature infer, TFLite Metadata" in process.stdout
    assert sorted(interpreter(output.read_bytes()).get_signature_list()) == ["infer"]
    for flags, message in (([f"--checkpoint={tmp_path / 'absent.ckpt'}"], "absent.ckpt"),
                           ([f"--checkpoint={fitted[1]}", "--image_range=5,1"], "finite LOW < HIGH")):
        bad = run_cli("export", f"--model={tiny_model_path}", *flags, f"--output={tmp_path / 'x.tflite'}")
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
        last = bad.stderr.strip().splitlines()[-1]
        assert last.startswith("compile-transfer: error:") and message in last
        assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("text", ["0", "a,b", "1,1", "5,1", "nan,1", "0,inf", "0,1,2"])
def test_a_bad_image_range_is_one_line(text):
    from tflite_transfer.compiler.cli import main
    from tflite_transfer.compiler.errors import InvalidInputError

    assert main._image_range("-1,1") == (-1.0, 1.0) and main._image_range(None) is None
    with pytest.raises(InvalidInputError, match=r"^--image_range='.*': expected (LOW,HIGH|finite LOW < HIGH)"):
        main._image_range(text)
