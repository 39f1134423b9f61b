"""Models whose digest is not checked (--skip_digest_check, or contract version 1) get the cheap
structure checks before TFLite sees them (runtime/cpp/src/model_structure.cc): a convolution
stride set to 0 used to kill the C++ demo with SIGFPE. Each damaged model below is well-formed
FlatBuffers (edited with the schema's object API) and must give one error line naming what is
wrong, whichever mode opens it; with the digest check on, the digest refuses it first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.cpp_runtime import assert_one_error_line, run_demo

CONV_2D, MEAN, RESHAPE, IF, CALL_ONCE, READ_VARIABLE = 3, 40, 22, 118, 129, 143
GOLDEN_MODEL = Path(__file__).resolve().parents[1] / "golden" / "vectors" / "model.tflite"


def edited(model_bytes: bytes, edit) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    edit(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def first_op(model, code: int):
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            op_code = model.operatorCodes[op.opcodeIndex]
            if max(op_code.builtinCode, op_code.deprecatedBuiltinCode) == code:
                return subgraph, op
    raise AssertionError(f"no op {code}")


def set_conv(field: str, value: int):
    return lambda model: setattr(first_op(model, CONV_2D)[1].builtinOptions, field, value)


def set_tensor(field: str, value):
    def edit(model):
        subgraph, op = first_op(model, CONV_2D)
        setattr(subgraph.tensors[op.inputs[1]].quantization if field.startswith("q.") else
                subgraph.tensors[op.inputs[1]], field.removeprefix("q."), value)
    return edit


def set_op(field: str, value):
    def edit(model):
        _, op = first_op(model, CONV_2D)
        setattr(op, field, value)
    return edit


def write_twice(model):  # the conv writes the tensor the op before it wrote
    subgraph, op = first_op(model, CONV_2D)
    op.outputs = np.array([op.inputs[0]], np.int32)


def read_before_write(model):  # the conv reads its own output
    subgraph, op = first_op(model, CONV_2D)
    op.inputs = np.array([op.outputs[0], *op.inputs[1:]], np.int32)


def reshape_int8_constant(model):  # a float RESHAPE fed the int8 conv weights
    subgraph, conv = first_op(model, CONV_2D)
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == RESHAPE:
            op.inputs = np.array([conv.inputs[1], *op.inputs[1:]], np.int32)
            return
    raise AssertionError("no RESHAPE beside the conv")


def mean_axis(model):
    subgraph, op = first_op(model, MEAN)
    model.buffers[subgraph.tensors[op.inputs[1]].buffer].data = np.array([1, 9], np.int32).view(np.uint8)


def variable_shape(model):
    subgraph, op = first_op(model, READ_VARIABLE)
    tensor = subgraph.tensors[op.outputs[0]]
    tensor.shape = np.array([*list(tensor.shape)[:-1], int(tensor.shape[-1]) + 1], np.int32)
    tensor.shapeSignature = None


def signature_name_twice(model):
    signature = next(s for s in model.signatureDefs if s.signatureKey == b"save")
    signature.outputs[1].name = signature.outputs[0].name


def signature_shorter(model):
    signature = next(s for s in model.signatureDefs if s.signatureKey == b"save")
    signature.outputs = signature.outputs[:-1]


def if_calls_its_own_subgraph(model):  # TFLite runs a call by recursion: unbounded, SIGSEGV
    subgraph, op = first_op(model, IF)
    op.builtinOptions.thenSubgraphIndex = op.builtinOptions.elseSubgraphIndex = model.subgraphs.index(subgraph)


CASES = [
    ("conv stride 0", set_conv("strideW", 0), "has stride_w 0 (must be >= 1)"),
    ("conv dilation 0", set_conv("dilationHFactor", 0), "has dilation_h_factor 0"),
    ("conv stride negative", set_conv("strideH", -3), "has stride_h -3"),
    ("conv options missing", set_op("builtinOptions", None), "lacks its options"),
    ("op input out of range", set_op("inputs", np.array([0, 100000, 2], np.int32)), "refers to tensor 100000"),
    ("op output negative", set_op("outputs", np.array([-2], np.int32)), "refers to tensor -2"),
    ("op code out of range", set_op("opcodeIndex", 9999), "uses missing op code 9999"),
    ("tensor buffer out of range", set_tensor("buffer", 99999), "refers to missing buffer 99999"),
    ("tensor negative dimension", set_tensor("shape", np.array([-1, 3, 3, 3], np.int32)), "negative dimension"),
    ("tensor of 2^31 elements", set_tensor("shape", np.array([2**15, 2**16, 1, 1], np.int32)), "more than 2^30"),
    ("constant of the wrong size", set_tensor("shape", np.array([7, 3, 3, 2], np.int32)), "its buffer holds"),
    ("zero point outside int8", set_tensor("q.zeroPoint", np.array([300] * 7, np.int64)), "zero point outside"),
    ("NaN scale", set_tensor("q.scale", np.array([np.nan] * 7, np.float32)), "scale that is not finite"),
    ("a tensor written twice", write_twice, "which is written already"),
    ("a tensor read before it is written", read_before_write, "which no earlier op writes"),
    ("a RESHAPE mixing types", reshape_int8_constant, "mixes tensor types"),
    ("a reduction axis outside the rank", mean_axis, "reduces over axis 9 of a rank 4 tensor"),
    ("a variable read with another shape", variable_shape, "with a shape it has nowhere else"),
    ("a signature naming two tensors alike", signature_name_twice, "names two tensors alike"),
    ("a signature shorter than its subgraph", signature_shorter, "are not its subgraph's inputs and outputs"),
    ("an IF that calls its own subgraph", if_calls_its_own_subgraph, "which is already running (a call cycle)"),
]


@pytest.fixture(scope="module")
def model_bytes(tiny_v2_model_path) -> bytes:
    return open(tiny_v2_model_path, "rb").read()


@pytest.mark.parametrize("model", ["tiny_v2_model_path", "small_model_path", "golden"])
def test_intact_models_pass_the_structure_checks(cpp_demo, request, tmp_path, model):
    """Compiled models of every kind the tests have (softmax/SGD on the tiny base, MLP/Adam on
    MobileNetV2, the golden model) train with the digest skipped: no check refuses valid bytes."""
    path = GOLDEN_MODEL if model == "golden" else request.getfixturevalue(model)
    result = run_demo(cpp_demo, "--check_model", "--model", path, "--skip_digest_check")
    described = json.loads(result.stdout)
    assert described["digest_checked"] is False
    images = np.zeros((2, *described["model_input"]["shape"]), described["model_input"]["dtype"])
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", np.array([0, 1]))
    run_demo(cpp_demo, "--model", path, "--skip_digest_check", "--images", tmp_path / "images.npy",
             "--labels", tmp_path / "labels.npy", "--epochs", 1)


@pytest.mark.parametrize("name,edit,fragment", CASES, ids=[case[0] for case in CASES])
def test_damaged_structure_is_refused_before_tflite(cpp_demo, model_bytes, tmp_path, name, edit, fragment):
    path = tmp_path / "damaged.tflite"
    path.write_bytes(edited(model_bytes, edit))
    for mode in (["--check_model"], ["--epochs", "0", "--images", tmp_path / "images.npy"]):
        np.save(tmp_path / "images.npy", np.zeros((2, 16, 12, 3), np.uint8))
        result = run_demo(cpp_demo, *mode, "--model", path, "--skip_digest_check", expect_ok=False, timeout=60)
        assert_one_error_line(result, "corrupt TFLite file", fragment)
    result = run_demo(cpp_demo, "--check_model", "--model", path, expect_ok=False, timeout=60)
    assert_one_error_line(result, "model_digest does not match")


def test_a_subgraph_index_out_of_range_is_refused(cpp_demo, model_bytes, tmp_path):
    def edit(model):
        first_op(model, CALL_ONCE)[1].builtinOptions.initSubgraphIndex = 77
    path = tmp_path / "call_once.tflite"
    path.write_bytes(edited(model_bytes, edit))
    result = run_demo(cpp_demo, "--check_model", "--model", path, "--skip_digest_check", expect_ok=False)
    assert_one_error_line(result, "calls missing subgraph 77")
