"""Op-version lowering: the rules against a table derived by hand from TFLite's op_version.cc,
the converter's own versions, and bit-identical signatures before and after lowering."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from tensorflow.lite.python import schema_py_generated as schema

from tests.helpers import compile_model, interpreter, random_images
from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.passes import op_version_rules, op_versions, runtime_versions
from tflite_transfer.compiler.errors import InvalidInputError

Op, T = schema.BuiltinOperator, schema.TensorType

# (op, type of input 0) -> version, read off op_version.cc (commit 03f49db5) by hand for the ops
# our models contain: float/int32 arithmetic is version 1, int8 kernels are 2 (conv 3).
EXPECTED = {
    (Op.ADD, T.FLOAT32): 1, (Op.ADD, T.INT32): 1, (Op.ADD, T.INT8): 2,
    (Op.SUB, T.FLOAT32): 1, (Op.MUL, T.FLOAT32): 1, (Op.MUL, T.INT8): 2, (Op.DIV, T.FLOAT32): 1,
    (Op.CONV_2D, T.INT8): 3, (Op.DEPTHWISE_CONV_2D, T.INT8): 3, (Op.MEAN, T.INT8): 2,
    (Op.DEQUANTIZE, T.INT8): 2, (Op.DEQUANTIZE, T.UINT8): 1, (Op.QUANTIZE, T.FLOAT32): 1,
    (Op.QUANTIZE, T.UINT8): 1, (Op.FULLY_CONNECTED, T.FLOAT32): 1, (Op.BATCH_MATMUL, T.FLOAT32): 1,
    (Op.CAST, T.INT32): 1, (Op.CAST, T.BOOL): 1, (Op.STRIDED_SLICE, T.INT32): 1,
    (Op.SOFTMAX, T.FLOAT32): 1, (Op.LOG_SOFTMAX, T.FLOAT32): 1, (Op.SUM, T.FLOAT32): 1,
    (Op.EXP, T.FLOAT32): 1, (Op.SQRT, T.FLOAT32): 1, (Op.RELU, T.FLOAT32): 1,
    (Op.GREATER, T.FLOAT32): 1, (Op.SQUARED_DIFFERENCE, T.FLOAT32): 1, (Op.REDUCE_PROD, T.INT32): 1,
    (Op.RESHAPE, T.FLOAT32): 1, (Op.RESHAPE, T.INT32): 1,
}
# runtime_version.cc: variables need 2.6.0, newer than anything else a lowered model uses.
EXPECTED_MIN_RUNTIME = "2.6.0"


def inflate(model: model_io.ModelT, to_version: int | None = None) -> model_io.ModelT:
    """Every builtin op code raised to the newest version TFLite 2.21 lists (what a newer tool
    may stamp), one table entry per op: the interpreter still runs it, kernels ignore versions."""
    newest = {}
    for (code, version), runtime in runtime_versions.RUNTIME_VERSIONS.items():
        if runtime_versions.version_tuple(runtime) <= (2, 21, 0):
            newest[code] = max(newest.get(code, 1), version)
    inflated = copy.deepcopy(model)
    for op_code in inflated.operatorCodes:
        if model_io.is_builtin(op_code):
            op_code.version = max(op_code.version, to_version or newest.get(model_io.builtin_code(op_code), 1))
    return inflated


def lowered(model: model_io.ModelT, **kwargs) -> tuple[model_io.ModelT, op_versions.VersionReport]:
    copied = copy.deepcopy(model)
    report = op_versions.lower_op_versions(copied, **kwargs)
    return copied, report


def run_contract(model_bytes: bytes, xnnpack: bool) -> list[np.ndarray]:
    """Every signature's outputs, in one fixed sequence of calls with fixed inputs."""
    model = interpreter(model_bytes, "litert", xnnpack)
    run = {key: model.get_signature_runner(key) for key in model.get_signature_list()}
    detail = run["load"].get_input_details()["image"]
    images = random_images(tuple(detail["shape_signature"][1:]), detail["dtype"], 4, seed=3)
    label_detail = run["train"].get_input_details()["label"]
    labels = (np.array([0, 1, 2, 0], np.int32) if label_detail["dtype"] == np.int32
              else np.eye(int(label_detail["shape_signature"][-1]), dtype=np.float32)[[0, 1, 2, 0]])
    outputs = [run["initialize"]()]
    bottleneck = run["load"](image=images)["bottleneck"]
    outputs += [{"bottleneck": bottleneck}, run["infer"](image=images)]
    outputs += [run["train"](bottleneck=bottleneck, label=labels) for _ in range(4)]
    outputs += [run["train_images"](image=images, label=labels)]
    state = run["save"]()
    outputs += [state, run["train"](bottleneck=bottleneck, label=labels), run["restore"](**state),
                run["save"](), run["set_learning_rate"](learning_rate=np.array([0.05], np.float32)),
                run["train"](bottleneck=bottleneck, label=labels), run["infer"](image=images),
                run["initialize"](), run["save"]()]
    return [value for result in outputs for _, value in sorted(result.items())]


def assert_bit_identical(first: list[np.ndarray], second: list[np.ndarray]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def tiny_adamw_mse(tiny_classifier_path, tiny_pool_name):
    """MLP head, AdamW, MSE loss: POW, SQRT, SQUARED_DIFFERENCE, REDUCE_PROD, RELU, GREATER."""
    return compile_model(tiny_classifier_path, tiny_pool_name, head="mlp:16", num_classes=3,
                         optimizer="adamw", loss="mse", learning_rate=0.01)


@pytest.fixture(scope="module")
def tiny_uncut_momentum(tiny_classifier_path):
    """The whole uint8 classifier as base (uint8 DEQUANTIZE, int8 SOFTMAX, PACK), momentum."""
    return compile_model(tiny_classifier_path, num_classes=3, optimizer="momentum", nesterov=True)


MODELS = ["tiny_fused", "small_fused", "tiny_adamw_mse", "tiny_uncut_momentum"]


@pytest.mark.parametrize("fixture", MODELS)
def test_rules_reproduce_the_converters_versions(request, fixture):
    """TF 2.21's converter already emits minimal versions: lowering a compiled model changes
    nothing, and no rule asks for more than the file declares."""
    model = model_io.read_model_bytes(request.getfixturevalue(fixture).model_bytes)
    _, report = lowered(model)
    assert report.changes == ()
    assert report.above_declared == ()
    assert report.no_rule == ()
    assert report.min_runtime_version == EXPECTED_MIN_RUNTIME
    assert runtime_versions.read_min_runtime_version(model) == EXPECTED_MIN_RUNTIME  # the converter's


@pytest.mark.parametrize("fixture", MODELS)
def test_lowering_an_inflated_model_gives_the_hand_derived_versions(request, fixture):
    compiled = model_io.read_model_bytes(request.getfixturevalue(fixture).model_bytes)
    result, report = lowered(inflate(compiled))
    assert report.changes and report.above_declared == ()
    seen = set()
    for subgraph in result.subgraphs:
        for op in subgraph.operators:
            op_code = result.operatorCodes[op.opcodeIndex]
            key = (model_io.builtin_code(op_code), subgraph.tensors[op.inputs[0]].type if len(op.inputs) else None)
            if key in EXPECTED:
                assert op_code.version == EXPECTED[key], (model_io.operator_name(op_code), key)
                seen.add(key)
            # Every op sits at exactly the version its own rule gives.
            assert op_code.version == op_version_rules.required_version(result, subgraph, op)
    assert (Op.ADD, T.FLOAT32) in seen and (Op.MUL, T.FLOAT32) in seen and (Op.SUB, T.FLOAT32) in seen
    keys = [model_io.op_code_key(c) for c in result.operatorCodes]
    assert len(keys) == len(set(keys)), "duplicate op-code entries after lowering"
    used = {op.opcodeIndex for g in result.subgraphs for op in g.operators}
    assert used == set(range(len(keys))), "unused op-code entries (the interpreter resolves every one)"
    assert sorted(keys) == sorted(model_io.op_code_key(c) for c in compiled.operatorCodes)
    assert report.min_runtime_version == EXPECTED_MIN_RUNTIME
    assert (runtime_versions.version_tuple(runtime_versions.min_runtime_version(inflate(compiled)))
            > runtime_versions.version_tuple(EXPECTED_MIN_RUNTIME))


def test_versions_split_per_op_and_merge_per_key(small_fused):
    """Inflated, int8 ADD (base) and float/int32 ADD (head) share one entry; lowering splits it
    into ADD v2 and ADD v1 and merges the float and int32 ADDs into one."""
    inflated = inflate(model_io.read_model_bytes(small_fused.model_bytes), to_version=5)
    adds = [c for c in inflated.operatorCodes if model_io.builtin_code(c) == Op.ADD]
    assert {c.version for c in adds} == {5}
    result, report = lowered(inflated)
    assert sorted(c.version for c in result.operatorCodes if model_io.builtin_code(c) == Op.ADD) == [1, 2]
    assert report.versions["ADD"] == (1, 2)
    assert any(change.op == "ADD" and change.to_version == 2 for change in report.changes)


@pytest.mark.parametrize("xnnpack", [True, False])
@pytest.mark.parametrize("fixture", MODELS)
def test_every_signature_bit_identical_after_lowering(request, fixture, xnnpack):
    compiled = model_io.read_model_bytes(request.getfixturevalue(fixture).model_bytes)
    inflated = inflate(compiled)
    reference = run_contract(model_io.write_model_bytes(compiled), xnnpack)
    for model in (inflated, lowered(inflated)[0], lowered(compiled)[0]):
        assert_bit_identical(reference, run_contract(model_io.write_model_bytes(model), xnnpack))


def test_structural_checks_hold_after_lowering(tiny_classifier_path, tiny_pool_name, tiny_fused):
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler.passes import cut

    base = sources.load_base(sources.BaseOptions(base=tiny_classifier_path, base_output=tiny_pool_name),
                           lambda m: None)
    prepared = cut.prepare_base(base.model, base.cut_at, base.source)
    result, _ = lowered(inflate(model_io.read_model_bytes(tiny_fused.model_bytes)))
    audit.audit_ops(result)
    audit.check_contract(result, tiny_fused.metadata.signatures)
    base_entry = model_io.signature_subgraph(result, "load")
    base_entry = model_io.called_subgraphs(result.subgraphs[base_entry].operators[0])[0]
    audit.check_base_preserved(base.model, prepared.entry_subgraph, result, base_entry,
                               prepared.kept_tensor_count, base.source)


def test_frozen_subgraphs_keep_their_versions(small_fused):
    inflated = inflate(model_io.read_model_bytes(small_fused.model_bytes))
    load = model_io.signature_subgraph(inflated, "load")
    base_first = model_io.called_subgraphs(inflated.subgraphs[load].operators[0])[0]
    frozen = range(base_first, len(inflated.subgraphs))
    result, report = lowered(inflated, frozen_subgraphs=frozen)
    for index, (before, after) in enumerate(zip(inflated.subgraphs, result.subgraphs)):
        for op_before, op_after in zip(before.operators, after.operators):
            versions = (inflated.operatorCodes[op_before.opcodeIndex].version,
                        result.operatorCodes[op_after.opcodeIndex].version)
            if index in frozen:
                assert versions[0] == versions[1]
    assert all(not set(c.subgraphs) & set(frozen) for c in report.changes)


def test_the_base_converters_min_runtime_version_is_reproduced(tiny_classifier_path):
    """The converter wrote min_runtime_version into the base it made; ours agrees."""
    base = model_io.read_model(tiny_classifier_path)
    assert runtime_versions.min_runtime_version(base) == runtime_versions.read_min_runtime_version(base) == "1.14.0"


def test_min_runtime_version_metadata(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    buffers = len(model.buffers)
    runtime_versions.set_min_runtime_version(model, "2.6.0")
    assert len(model.buffers) == buffers  # its own buffer is overwritten in place
    reread = model_io.read_model_bytes(model_io.write_model_bytes(model))
    entry = next(e for e in reread.metadata if e.name == b"min_runtime_version")
    assert model_io.buffer_bytes(reread, entry.buffer) == b"2.6.0" + b"\0" * 11
    assert runtime_versions.read_min_runtime_version(reread) == "2.6.0"
    interpreter(model_io.write_model_bytes(reread)).get_signature_runner("initialize")()
    for bad in ("", "2.6.0-rc1", "1234567890.12345"):
        with pytest.raises(InvalidInputError):
            runtime_versions.set_min_runtime_version(model, bad)
    model.metadata = []
    runtime_versions.set_min_runtime_version(model, "2.13.0")
    assert runtime_versions.read_min_runtime_version(model) == "2.13.0"


def spec(type_, dims=(1, 4), scales=0, axis=0, quantized=None, sparse=False):
    return op_version_rules.TensorSpec(type_, tuple(dims), bool(scales) if quantized is None else quantized,
                                  scales, 0.5 if scales else 0.0, axis, sparse)


def signature(inputs, outputs, options=None):
    return op_version_rules.OpSignature(tuple(inputs), tuple(outputs), options)


def options(cls, **fields):
    value = cls()
    for name, field in fields.items():
        setattr(value, name, field)
    return value


# Branches of op_version.cc our compiled models do not reach, each checked by hand.
RULE_CASES = [
    (Op.CONV_2D, signature([spec(T.FLOAT32, (1, 8, 8, 3)), spec(T.INT8, (4, 3, 3, 3), scales=4)],
                           [spec(T.FLOAT32)]), 5),                       # hybrid, per channel
    (Op.CONV_2D, signature([spec(T.FLOAT32, (1, 8, 8, 3)), spec(T.INT8, (4, 3, 3, 3), scales=1)],
                           [spec(T.FLOAT32)]), 2),                       # hybrid, per tensor
    (Op.CONV_2D, signature([spec(T.INT8, (1, 8, 8, 6)), spec(T.INT8, (4, 3, 3, 3), scales=4)],
                           [spec(T.INT8)]), 6),                          # grouped
    (Op.CONV_2D, signature([spec(T.INT8, (1, 8, 8, 3)), spec(T.INT8, (4, 3, 3, 3), scales=4)],
                           [spec(T.INT8)]), 3),                          # int8, per channel: still 3
    (Op.DEPTHWISE_CONV_2D, signature([spec(T.FLOAT32, (1, 8, 8, 4)), spec(T.INT8, (1, 3, 3, 4), scales=4)],
                                     [spec(T.FLOAT32)]), 6),
    (Op.DEPTHWISE_CONV_2D, signature([spec(T.FLOAT32, (1, 8, 8, 4)), spec(T.FLOAT32, (1, 3, 3, 4))],
                                     [spec(T.FLOAT32)], options(schema.DepthwiseConv2DOptionsT, dilationWFactor=2)), 2),
    (Op.ADD, signature([spec(T.INT16), spec(T.INT16)], [spec(T.INT16)]), 5),   # unquantized int16
    (Op.ADD, signature([spec(T.INT16, scales=1), spec(T.INT16, scales=1)], [spec(T.INT16, scales=1)],
                       options(schema.AddOptionsT, potScaleInt16=False)), 3),
    (Op.ADD, signature([spec(T.INT64), spec(T.INT64)], [spec(T.INT64)]), 4),
    (Op.SUB, signature([spec(T.FLOAT32, (1, 2, 3, 4, 5)), spec(T.FLOAT32, (1,))], [spec(T.FLOAT32)]), 3),
    (Op.SUB, signature([spec(T.FLOAT32, (2, 3)), spec(T.FLOAT32, (3,))], [spec(T.FLOAT32)]), 1),
    (Op.DIV, signature([spec(T.FLOAT32, (1, 2, 3, 4, 5)), spec(T.FLOAT32, (1,))], [spec(T.FLOAT32)]), 2),
    (Op.MUL, signature([spec(T.INT8, scales=1), spec(T.INT8, scales=1)], [spec(T.INT8, scales=1)]), 2),
    (Op.FULLY_CONNECTED, signature([spec(T.FLOAT32), spec(T.FLOAT32)], [spec(T.FLOAT32)]), 6),  # no bias
    (Op.FULLY_CONNECTED, signature([spec(T.FLOAT32), spec(T.FLOAT32), spec(T.FLOAT32)], [spec(T.FLOAT32)],
                                   options(schema.FullyConnectedOptionsT, keepNumDims=True)), 5),
    (Op.FULLY_CONNECTED, signature([spec(T.INT8), spec(T.INT8), spec(T.INT32)], [spec(T.INT8)]), 4),
    (Op.DEQUANTIZE, signature([spec(T.INT8, (4, 3), scales=4, axis=0)], [spec(T.FLOAT32)]), 5),
    (Op.DEQUANTIZE, signature([spec(T.FLOAT16)], [spec(T.FLOAT32)]), 3),
    (Op.QUANTIZE, signature([spec(T.FLOAT32)], [spec(T.INT16, scales=1)]), 2),
    (Op.STRIDED_SLICE, signature([spec(T.INT32, (4,))] * 4, [spec(T.INT32)],
                                 options(schema.StridedSliceOptionsT, ellipsisMask=1)), 6),
    (Op.STRIDED_SLICE, signature([spec(T.FLOAT32, (1, 2, 3, 4, 5))] + [spec(T.INT32, (5,))] * 3,
                                 [spec(T.FLOAT32)]), 4),
    (Op.CAST, signature([spec(T.FLOAT32)], [spec(T.INT8)]), 3),
    (Op.CAST, signature([spec(T.FLOAT16)], [spec(T.FLOAT32)]), 5),
    (Op.MEAN, signature([spec(T.INT16), spec(T.INT32)], [spec(T.INT16)]), 3),
    (Op.SOFTMAX, signature([spec(T.UINT8)], [spec(T.UINT8)]), 1),
]


@pytest.mark.parametrize("code, op_signature, version", RULE_CASES)
def test_rule_branches(code, op_signature, version):
    assert op_version_rules.RULES[code](op_signature) == version


def test_ops_without_a_rule_keep_their_version(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    for op_code in model.operatorCodes:
        if model_io.builtin_code(op_code) == Op.ONE_HOT:
            op_code.version = 3
    saved = op_version_rules.RULES.pop(Op.ONE_HOT)
    try:
        result, report = lowered(model)
    finally:
        op_version_rules.RULES[Op.ONE_HOT] = saved
    assert report.no_rule == ("ONE_HOT",)
    assert [c.version for c in result.operatorCodes if model_io.builtin_code(c) == Op.ONE_HOT] == [3]


def test_a_model_that_needs_no_change_keeps_its_op_table(small_fused):
    model = model_io.read_model_bytes(small_fused.model_bytes)
    result, _ = lowered(model)
    assert [model_io.op_code_key(c) for c in result.operatorCodes] == \
        [model_io.op_code_key(c) for c in model.operatorCodes]
    assert model_io.write_model_bytes(result) == model_io.write_model_bytes(model)
