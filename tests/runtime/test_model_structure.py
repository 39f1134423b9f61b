"""runtime/model_structure.py: the structure checks the compiler runs on every base it reads and
the runtime on every model it opens without checking its digest (LiteRT aborts the process on
some damaged files: double free, SIGSEGV, SIGFPE). Each damage is made on purpose in a valid
compiled model, then refused with one line by both readers."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.runtime import TransferModel, contract, model_structure
from tflite_transfer.runtime.errors import InvalidInputError


def first_op(model, name):
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == name:
                return subgraph, op
    raise LookupError(name)


def conv_stride_zero(model):
    first_op(model, "CONV_2D")[1].builtinOptions.strideH = 0


def conv_without_options(model):
    op = first_op(model, "CONV_2D")[1]
    op.builtinOptions, op.builtinOptionsType = None, 0


def zero_point_outside_int8(model):
    subgraph, op = first_op(model, "CONV_2D")
    quantization = subgraph.tensors[op.outputs[0]].quantization
    quantization.zeroPoint = np.array([200] * len(quantization.scale), np.int64)


def missing_buffer(model):
    subgraph, op = first_op(model, "CONV_2D")
    subgraph.tensors[op.inputs[1]].buffer = len(model.buffers) + 5


def missing_tensor(model):
    first_op(model, "CONV_2D")[1].inputs[0] = 10_000


def call_once_to_missing_subgraph(model):
    first_op(model, "CALL_ONCE")[1].builtinOptions.initSubgraphIndex = len(model.subgraphs) + 1


def constant_of_the_wrong_size(model):
    subgraph, op = first_op(model, "CONV_2D")
    weights = subgraph.tensors[op.inputs[1]]
    weights.shape = np.array([*weights.shape[:-1], weights.shape[-1] + 1], np.int32)


def unknown_op_code(model):
    model.operatorCodes[0].builtinCode = 9999


def shape_signature_disagreeing(model):
    subgraph, op = first_op(model, "CONV_2D")
    tensor = subgraph.tensors[op.outputs[0]]
    tensor.shapeSignature = np.array([-1, 99, *tensor.shape[2:]], np.int32)


def huge_tensor(model):
    subgraph, op = first_op(model, "CONV_2D")
    subgraph.tensors[op.outputs[0]].shape = np.array([1, 2**20, 2**11, 1], np.int32)
    subgraph.tensors[op.outputs[0]].shapeSignature = None


def subnormal_scale(model):
    """A base input's scale of 3e-45: XNNPACK (LiteRT's default delegate) segfaulted on it."""
    subgraph, op = first_op(model, "QUANTIZE")
    subgraph.tensors[op.inputs[0]].quantization.scale = np.array([3e-45], np.float32)


def if_calls_its_own_subgraph(model):
    """A flipped bit pointed `infer`'s IF at `infer` itself: unbounded recursion, SIGSEGV."""
    subgraph, op = first_op(model, "IF")
    op.builtinOptions.thenSubgraphIndex = op.builtinOptions.elseSubgraphIndex = model.subgraphs.index(subgraph)


DAMAGE = {
    "IF calls its own subgraph": (if_calls_its_own_subgraph, r"\(a call cycle\)"),
    "subnormal quantization scale": (subnormal_scale, "quantization scales that are not finite normal numbers"),
    "conv stride 0": (conv_stride_zero, r"op \d+ of subgraph \d+ \(CONV_2D\) has strideH 0 \(must be >= 1\)"),
    "conv without options": (conv_without_options, r"\(CONV_2D\) lacks its Conv2DOptions"),
    "zero point 200 in int8": (zero_point_outside_int8, r"has zero points outside \[-128, 127\]"),
    "missing buffer": (missing_buffer, "refers to missing buffer"),
    "missing tensor": (missing_tensor, "refers to tensor 10000, which does not exist"),
    "CALL_ONCE to a missing subgraph": (call_once_to_missing_subgraph, "calls missing subgraph"),
    "constant of the wrong size": (constant_of_the_wrong_size, r"needs \d+ bytes, its buffer holds \d+"),
    "unknown op code": (unknown_op_code, "op code 9999 is no TFLite builtin"),
    "shape signature": (shape_signature_disagreeing, "but shape signature"),
    "2^31 elements": (huge_tensor, "more than 1073741824 elements"),
}


@pytest.fixture(scope="module")
def valid_bytes(tiny_fused) -> bytes:
    return tiny_fused.model_bytes


def damaged(valid_bytes: bytes, damage) -> bytes:
    model = model_io.read_model_bytes(valid_bytes)
    damage(model)
    return model_io.write_model_bytes(model)


def test_the_valid_model_passes(valid_bytes):
    model_structure.check_structure(valid_bytes, "model.tflite")
    assert TransferModel.open(valid_bytes, verify_digest=False).num_classes == 3


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_the_runtime_refuses_damage_when_it_skips_the_digest(valid_bytes, case):
    damage, message = DAMAGE[case]
    data = damaged(valid_bytes, damage)
    with pytest.raises(InvalidInputError, match=f"<bytes>: corrupt TFLite file: .*{message}") as raised:
        TransferModel.open(data, verify_digest=False)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_the_compiler_refuses_the_same_damage(valid_bytes, case):
    """The same checks (moved, not copied): the compiler's reader runs runtime/model_structure.py."""
    damage, message = DAMAGE[case]
    with pytest.raises(InvalidInputError, match=f"base.tflite: corrupt TFLite file: .*{message}"):
        model_io.read_model_bytes(damaged(valid_bytes, damage), "base.tflite")


# The dataflow rules (runtime/model_dataflow.py): checked by the runtime on a model whose digest
# it did not check, as the C++ runtime does. Each damage below is one a digest-off fuzz campaign
# turned into a crash (a heap corruption or a SIGSEGV), or one the C++ runtime's campaign did.
def second_writer(model):
    subgraph, op = first_op(model, "EXP")  # train: EXP writes what LOG_SOFTMAX wrote
    op.outputs = [op.inputs[0]]


def read_variable_without_output(model):
    subgraph = model.subgraphs[next(s.subgraphIndex for s in model.signatureDefs if s.signatureKey == b"restore")]
    read = [op for op in subgraph.operators
            if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "READ_VARIABLE"][-1]
    read.outputs = []


def writes_a_constant(model):
    subgraph, op = first_op(model, "CONV_2D")
    op.outputs = [op.inputs[1]]


def reduction_axis_out_of_rank(model):
    subgraph, op = first_op(model, "MEAN")
    axes = subgraph.tensors[op.inputs[1]]
    model.buffers[axes.buffer] = model_io.make_buffer(np.full(int(np.prod(axes.shape)), 9, "<i4").tobytes())


def reshape_changes_type(model):
    subgraph, op = first_op(model, "RESHAPE")
    output = subgraph.tensors[op.outputs[0]]
    output.type = 9 if output.type != 9 else 0  # int8, or float32 if it was int8


def if_drops_an_input(model):
    subgraph, op = first_op(model, "IF")
    op.inputs = op.inputs[:-1]


DATAFLOW_DAMAGE = {
    "a second writer": (second_writer, r"op \d+ of subgraph \d+ writes tensor \d+, which is written already"),
    "READ_VARIABLE without output": (read_variable_without_output, r"\(READ_VARIABLE\) has 0 outputs, not 1"),
    "writes a constant": (writes_a_constant, "writes into constant tensor"),
    "reduction axis 9": (reduction_axis_out_of_rank, r"\(MEAN\) reduces over axis 9 of a rank 4 tensor"),
    "RESHAPE changes type": (reshape_changes_type, r"\(RESHAPE\) mixes tensor types"),
    "IF drops an input": (if_drops_an_input, r"\(IF\) passes a subgraph the wrong number of tensors"),
}


@pytest.mark.parametrize("case", sorted(DATAFLOW_DAMAGE))
def test_the_runtime_refuses_broken_dataflow_without_the_digest(valid_bytes, case):
    damage, message = DATAFLOW_DAMAGE[case]
    data = damaged(valid_bytes, damage)
    with pytest.raises(InvalidInputError, match=f"<bytes>: corrupt TFLite file: .*{message}") as raised:
        TransferModel.open(data, verify_digest=False)
    assert "\n" not in str(raised.value)


def test_valid_models_of_every_kind_pass_the_dataflow_rules(tiny_fused, stateful_compiled, tiny_classifier_path,
                                                           tiny_pool_name):
    """Fixed batches, a stateful base, Adam: all open without their digest."""
    from tests.helpers import compile_model
    from tflite_transfer.compiler.passes import batch

    models = [tiny_fused.model_bytes, stateful_compiled("float").model_bytes,
              compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, optimizer="adam",
                            learning_rate=0.01, batch_options=batch.BatchOptions(3, 4)).model_bytes]
    for model_bytes in models:
        model_structure.check_structure(model_bytes, "model.tflite", dataflow=True)
        TransferModel.open(model_bytes, verify_digest=False).get_state()


def test_a_model_with_a_digest_is_not_structure_checked_twice(valid_bytes, monkeypatch):
    """The digest vouches for the bytes the compiler checked; without one, or with
    verify_digest=False, the structure checks run."""
    calls = []
    monkeypatch.setattr(model_structure, "check_structure", lambda *args, **kwargs: calls.append(args))
    assert contract.find_digest(valid_bytes) is not None
    TransferModel.open(valid_bytes)
    assert calls == []
    TransferModel.open(valid_bytes, verify_digest=False)
    assert len(calls) == 1


@pytest.mark.parametrize("size", [0, 7, 8, 100, 1000])
def test_truncated_files_are_one_line_errors(valid_bytes, size):
    with pytest.raises(InvalidInputError) as raised:
        model_structure.check_structure(valid_bytes[:size], "cut.tflite")
    assert str(raised.value).startswith("cut.tflite: ") and "\n" not in str(raised.value)


def test_an_exported_model_opened_without_its_digest_is_checked_too(tiny_fused):
    from tflite_transfer.compiler.export.inference_model import export_inference_model
    from tflite_transfer.runtime import InferenceModel

    exported = export_inference_model(tiny_fused.model_bytes, TransferModel.open(tiny_fused.model_bytes).get_state())
    assert InferenceModel.open(exported, verify_digest=False).num_classes == 3
    with pytest.raises(InvalidInputError, match=r"corrupt TFLite file: .*\(CONV_2D\) has strideH 0"):
        InferenceModel.open(damaged(exported, conv_stride_zero), verify_digest=False)
