"""--batch=IMAGES,TRAIN: static signature batches (what LiteRT.js needs), recorded in the
metadata, running in both interpreters, with arithmetic bit-identical to the dynamic model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import compile_model, interpreter, random_images
from test_cli_helpers import run_cli
from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.passes import batch
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.runtime import contract

BATCHES = [(1, 8), (2, 4)]


@pytest.fixture(scope="session")
def static_models(tiny_classifier_path, tiny_pool_name):
    """The tiny softmax/SGD model of conftest.tiny_fused compiled with each fixed batch pair."""
    return {batches: compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                                   batch_options=batch.BatchOptions(*batches))
            for batches in BATCHES}


def metadata_of(model_bytes: bytes) -> contract.ModelMetadata:
    model = model_io.read_model_bytes(model_bytes)
    entry = next(e for e in model.metadata if e.name == contract.METADATA_KEY.encode())
    return contract.ModelMetadata.from_json(model_io.buffer_bytes(model, entry.buffer))


def expected_batch(signature: str, image_batch: int, train_batch: int) -> int | None:
    return batch.signature_batches(image_batch, train_batch).get(signature)


@pytest.mark.parametrize("batches", BATCHES)
def test_every_tensor_a_fixed_signature_runs_is_static(static_models, batches):
    """Signature inputs/outputs and every non-constant tensor behind them (the base behind the
    IF included) have static shapes; the other signatures are untouched."""
    model = model_io.read_model_bytes(static_models[batches].model_bytes)
    for signature in model.signatureDefs:
        key = signature.signatureKey.decode()
        fixed = expected_batch(key, *batches)
        subgraph = model.subgraphs[signature.subgraphIndex]
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor = subgraph.tensors[tensor_map.tensorIndex]
            shape = model_io.tensor_shape(tensor)
            assert all(d >= 0 for d in shape), (key, tensor_map.name, shape)
            if fixed is not None and tensor_map in (signature.inputs or []):
                assert shape[0] == fixed and list(tensor.shape) == shape, (key, tensor_map.name, shape)
        if fixed is None:
            continue
        for index in audit.reachable_subgraphs(model, signature.subgraphIndex):
            for tensor in model.subgraphs[index].tensors:
                assert all(d >= 0 for d in model_io.tensor_shape(tensor)), (key, index, tensor.name)


@pytest.mark.parametrize("batches", BATCHES)
def test_metadata_and_summary_say_the_batches(static_models, batches):
    result = static_models[batches]
    metadata = metadata_of(result.model_bytes)
    assert (metadata.image_batch, metadata.train_batch) == batches
    assert metadata.fixed_batch(contract.LOAD) == batches[0] and metadata.fixed_batch(contract.TRAIN) == batches[1]
    assert metadata.fixed_batch(contract.SAVE) is None
    assert (result.metadata.image_batch, result.metadata.train_batch) == batches
    assert result.batch.describe() == f"image signatures batch fixed {batches[0]}, train batch fixed {batches[1]}"


def test_default_stays_dynamic(tiny_fused):
    metadata = metadata_of(tiny_fused.model_bytes)
    assert metadata.image_batch is None and metadata.train_batch is None
    shapes = {key: [t.shape for t in inputs] for key, (inputs, _) in tiny_fused.signatures.items()}
    assert shapes["load"][0][0] == -1 and all(t[0] == -1 for t in shapes["train"])


def run_signatures(model_bytes: bytes, image_batch: int, train_batch: int, kind: str, xnnpack: bool):
    """Runs every signature once at the given batches; returns every output, in call order."""
    runner = interpreter(model_bytes, kind, xnnpack)
    image_input = runner.get_signature_runner("load").get_input_details()["image"]
    images = random_images(tuple(image_input["shape"][1:]), image_input["dtype"], image_batch, seed=1)
    bottleneck_size = runner.get_signature_runner("load").get_output_details()["bottleneck"]["shape"][-1]
    rng = np.random.default_rng(2)
    outputs = {"initialize": runner.get_signature_runner("initialize")()}
    outputs["load"] = runner.get_signature_runner("load")(image=images)
    outputs["infer"] = runner.get_signature_runner("infer")(image=images)
    for step in range(3):
        bottleneck = rng.random((train_batch, bottleneck_size), dtype=np.float32)
        label = rng.integers(0, 3, train_batch).astype(np.int32)
        outputs[f"train{step}"] = runner.get_signature_runner("train")(bottleneck=bottleneck, label=label)
    outputs["train_images"] = runner.get_signature_runner("train_images")(
        image=images, label=np.arange(image_batch, dtype=np.int32) % 3)
    outputs["save"] = runner.get_signature_runner("save")()
    outputs["set_learning_rate"] = runner.get_signature_runner("set_learning_rate")(
        learning_rate=np.array([0.05], np.float32))
    outputs["restore"] = runner.get_signature_runner("restore")(**outputs["save"])
    return outputs


@pytest.mark.parametrize("batches", BATCHES)
@pytest.mark.parametrize("kind,xnnpack", [("litert", True), ("litert", False), ("tf", True)])
def test_every_signature_runs_at_its_batch_bit_identical_to_the_dynamic_model(
        static_models, tiny_fused, batches, kind, xnnpack):
    """Same calls, same interpreter options: the static model's outputs (load, infer, losses of
    3 train steps and train_images, the trained state) equal the dynamic model's bit for bit."""
    static = run_signatures(static_models[batches].model_bytes, *batches, kind, xnnpack)
    dynamic = run_signatures(tiny_fused.model_bytes, *batches, kind, xnnpack)
    assert static["load"]["bottleneck"].shape == (batches[0], 7)
    assert static["infer"]["probabilities"].shape == (batches[0], 3)
    assert set(static) == set(dynamic)
    for call, values in static.items():
        for name, value in values.items():
            np.testing.assert_array_equal(value, dynamic[call][name], err_msg=f"{call}: {name}")
    assert not np.array_equal(static["save"]["dense_0_kernel"],
                              static_models[batches].head.initial_state["dense_0_kernel"])  # it trained


def test_verify_runs_train_at_the_fixed_batch(tiny_classifier_path, tiny_pool_name):
    result = compile_model(tiny_classifier_path, tiny_pool_name, verify_steps=3, num_classes=3,
                           learning_rate=0.1, batch_options=batch.BatchOptions(None, 5))
    assert result.parity.batch_size == 5 and result.parity.passed(1e-5)
    assert (result.metadata.image_batch, result.metadata.train_batch) == (None, 5)
    shapes = {key: [t.shape for t in inputs] for key, (inputs, _) in result.signatures.items()}
    assert shapes["load"][0][0] == -1 and all(t[0] == 5 for t in shapes["train"])


@pytest.mark.parametrize("text,expected", [
    (None, (None, None)), ("", (None, None)), ("dynamic", (None, None)),
    ("1,16", (1, 16)), (" 2 , 4 ", (2, 4)), ("1,any", (1, None)), ("any,8", (None, 8))])
def test_batch_flag_values(text, expected):
    options = batch.parse_batch_flag(text)
    assert (options.image_batch, options.train_batch) == expected


@pytest.mark.parametrize("text", ["0,8", "1,-4", "1", "1,2,3", "a,b", "1.5,8", "1,", ",8", "1e3,8", "-1,-1"])
def test_bad_batch_flag_values_are_one_clear_error(text):
    with pytest.raises(InvalidInputError, match="--batch") as error:
        batch.parse_batch_flag(text)
    assert "\n" not in str(error.value)


def test_cli_batch_flag(tiny_classifier_path, tiny_pool_name, tmp_path):
    output = tmp_path / "static.tflite"
    process = run_cli(f"--base={tiny_classifier_path}", f"--base_output={tiny_pool_name}", "--num_classes=3",
                      "--batch=1,8", "--verify_steps=2", f"--output={output}")
    assert process.returncode == 0, process.stderr
    assert "batch: image signatures batch fixed 1, train batch fixed 8" in process.stdout
    assert "image [1, 16, 12, 3] uint8" in process.stdout and "verify: 2 train steps (batch 8)" in process.stdout
    assert (metadata_of(output.read_bytes()).image_batch, metadata_of(output.read_bytes()).train_batch) == (1, 8)
    bad = run_cli(f"--base={tiny_classifier_path}", "--batch=0,8", f"--output={tmp_path / 'bad.tflite'}")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("compile-transfer: error: --batch='0,8': IMAGES")
    assert not (tmp_path / "bad.tflite").exists()


@pytest.mark.parametrize("batches", [(1, 4), (2, 4)])
def test_a_base_that_sizes_its_frames_when_it_runs_keeps_those_sizes_dynamic(tmp_path, batches):
    """Fixing the batch sets only the batch: a tensor whose other dimension is -1 (the base's
    SLICE output [-1, -1], sized from SHAPE when it runs) keeps its shape signature, else TFLite
    checks the SLICE against a stored [B, 1] and fails ("44032 != 1" on the hosted keyword
    model). The compile's own proofs run every signature at its batch and compare `load` with
    the base file over 4 calls; here `load` is also compared with the base run alone."""
    from tests.fixtures.tensor_bases import FRAMED_SAMPLES, framing_audio_base

    path = tmp_path / "framing.tflite"
    path.write_bytes(framing_audio_base())
    result = compile_model(str(path), None, num_classes=3, batch_options=batch.BatchOptions(*batches))
    model = model_io.read_model_bytes(result.model_bytes)
    load = model_io.signature_subgraph(model, contract.LOAD)
    signatures = [model_io.tensor_shape(tensor) for index in audit.reachable_subgraphs(model, load)
                  for tensor in model.subgraphs[index].tensors]
    assert any(any(d < 0 for d in shape[1:]) for shape in signatures)       # a run-time size kept
    assert not any(shape[0] < 0 and all(d >= 0 for d in shape[1:]) for shape in signatures if shape)

    audio = np.random.default_rng(0).normal(0, 1, (batches[0], FRAMED_SAMPLES)).astype(np.float32)
    ours = interpreter(result.model_bytes).get_signature_runner(contract.LOAD)(input=audio)["bottleneck"]
    alone = interpreter(path.read_bytes())
    alone.resize_tensor_input(alone.get_input_details()[0]["index"], audio.shape)
    alone.allocate_tensors()
    alone.set_tensor(alone.get_input_details()[0]["index"], audio)
    alone.invoke()
    np.testing.assert_array_equal(ours, alone.get_tensor(alone.get_output_details()[0]["index"]))
