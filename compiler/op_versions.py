"""Lowers every op code to the lowest version its kernel semantics need, and tells the truth in
`min_runtime_version`.

Old runtimes refuse a model by op VERSION, not op type: TF 2.12 loads ADD up to version 4 and
fails on version 5 with "Didn't find op for builtin opcode 'ADD' version '5' ... Are you using
an old TFLite binary with a newer model?" (../shared/NOTES-tflite.md). Kernels never read the
version: it only selects a registration, so an op stamped higher than its tensors and options
need runs unchanged at the lower version, in every runtime that has it.

The rules are TFLite's own, for the ops our models contain (bases: int8/uint8 CNNs; heads:
float training graphs): `GetBuiltinOperatorVersion` and the `ext_options` of
`GetOpSignature` in tensorflow/compiler/mlir/lite/tools/versioning/op_version.cc (commit
03f49db5a23ec2b22a59f3f3d72e5744469ea30b) and op_signature.cc (2b746b8f), the same rules the
TF 2.21 converter applies. Ops without a rule here keep their version. The runtime table is
`FindMinimumRuntimeVersionForOp` in .../versioning/runtime_version.cc (03f49db5).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from tflite_transfer.compiler import model_io
from tflite_transfer.compiler.errors import InvalidInputError

Op = schema.BuiltinOperator
T = schema.TensorType
MIN_RUNTIME_VERSION = b"min_runtime_version"
_MIN_RUNTIME_BYTES = 16  # the metadata buffer the converter writes: a NUL-padded string


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """What op_signature.cc reads of one tensor."""

    type: int
    dims: tuple[int, ...]                 # `shape` (not shape_signature), as the C++ reads it
    has_quantization: bool                # a quantization table is present (even an empty one)
    scales: int                           # number of quantization scales
    first_scale: float
    quantized_dimension: int
    sparse: bool


_NO_TENSOR = TensorSpec(-1, (), False, 0, 0.0, 0, False)  # an omitted optional input (-1)


@dataclasses.dataclass(frozen=True)
class OpSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: object                       # the op's builtinOptions (None: the schema defaults)

    def input(self, index: int) -> TensorSpec:
        return self.inputs[index] if index < len(self.inputs) else _NO_TENSOR

    def output(self, index: int) -> TensorSpec:
        return self.outputs[index] if index < len(self.outputs) else _NO_TENSOR

    def option(self, name: str, default):
        value = getattr(self.options, name, None) if self.options is not None else None
        return default if value is None else value


def _spec(subgraph: schema.SubGraphT, index: int) -> TensorSpec:
    if index < 0:
        return _NO_TENSOR
    tensor = subgraph.tensors[index]
    quantization = tensor.quantization
    scale = [] if quantization is None or quantization.scale is None else list(np.ravel(quantization.scale))
    dims = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
    return TensorSpec(tensor.type, dims, quantization is not None, len(scale),
                      float(scale[0]) if scale else 0.0,
                      int(quantization.quantizedDimension or 0) if quantization is not None else 0,
                      tensor.sparsity is not None)


def op_signature(subgraph: schema.SubGraphT, op: schema.OperatorT) -> OpSignature:
    inputs = [] if op.inputs is None else op.inputs
    outputs = [] if op.outputs is None else op.outputs
    return OpSignature(tuple(_spec(subgraph, int(i)) for i in inputs),
                       tuple(_spec(subgraph, int(i)) for i in outputs), op.builtinOptions)


# --- the rules of op_version.cc, one function per op ----------------------------------------

def _per_channel(spec: TensorSpec, channels: int) -> bool:
    return channels > 0 and spec.scales == channels


def _conv_2d(s: OpSignature) -> int:
    i, w, o = s.input(0).type, s.input(1).type, s.output(0).type
    if (i, w, o) == (T.INT16, T.INT8, T.INT16) and s.option("quantizedBiasType", 0):
        return 8
    filters = s.input(1)
    if s.input(0).dims and len(filters.dims) == 4 and s.input(0).dims[3] != filters.dims[3]:
        return 6  # grouped convolution
    if (i, w) == (T.INT16, T.INT16) and s.output(1).type == T.INT16:  # sic: output 1
        return 4
    if (i, w, o) == (T.INT8, T.INT8, T.INT8):
        return 3
    if (i, w, o) == (T.INT8, T.INT4, T.INT8):
        return 7
    if (i, w, o) == (T.FLOAT32, T.INT8, T.FLOAT32):
        return 5 if _per_channel(filters, filters.dims[0] if filters.dims else 0) else 2
    return 1


def _depthwise_conv_2d(s: OpSignature) -> int:
    i, w, o = s.input(0).type, s.input(1).type, s.output(0).type
    if (i, w) == (T.INT16, T.INT16) and s.output(1).type == T.INT16:  # sic: output 1
        return 5
    filters = s.input(1)
    if (i, w, o) == (T.FLOAT32, T.INT8, T.FLOAT32):
        return 6 if _per_channel(filters, filters.dims[3] if len(filters.dims) == 4 else 0) else 4
    if (i, w, o) == (T.INT8, T.INT8, T.INT8):
        return 3
    if (i, w, o) == (T.INT8, T.INT4, T.INT8):
        return 7
    if s.option("dilationWFactor", 1) != 1 or s.option("dilationHFactor", 1) != 1:
        return 2
    return 1


def _fully_connected(s: OpSignature) -> int:
    i, w, o = s.input(0).type, s.input(1).type, s.output(0).type
    weights = s.input(1)
    if w == T.INT2:
        return 14
    if (i, w, o) == (T.INT16, T.INT4, T.INT16):
        return 13
    if (i, w, o) == (T.FLOAT32, T.INT8, T.FLOAT32) and weights.dims and weights.scales == weights.dims[0]:
        return 12
    if (i, w, o) == (T.INT16, T.INT8, T.INT16) and s.option("quantizedBiasType", 0):
        return 11
    if weights.sparse:
        return 8
    if (i, w, o) == (T.INT16, T.INT16, T.INT16):
        return 7
    if len(s.inputs) == 2:
        return 6  # no bias input at all (an omitted bias, index -1, is still 3 inputs)
    if s.option("keepNumDims", False):
        return 5
    if (i, w, o) == (T.INT8, T.INT8, T.INT8):
        return 4
    if (i, w, o) == (T.INT8, T.INT4, T.INT8):
        return 10
    if (i, w, o) == (T.FLOAT32, T.INT8, T.FLOAT32):
        return 9 if s.option("asymmetricQuantizeInputs", False) else 3
    if s.option("weightsFormat", 0) == schema.FullyConnectedOptionsWeightsFormat.SHUFFLED4x16INT8:
        return 2
    return 1


def _mul(s: OpSignature) -> int:
    first = s.input(0).type
    input_quantized = s.input(0).has_quantization or s.input(1).has_quantization
    if first == T.FLOAT16:
        return 8
    if (first == T.INT16 and not input_quantized) or first == T.UINT32:
        return 7
    if first == T.COMPLEX64:
        return 6
    if first == T.INT64:
        return 5
    if first == T.INT16:
        return 4
    a, b, out = s.input(0), s.input(1), s.output(0)
    if a.scales and b.scales and out.scales and a.first_scale and b.first_scale and out.first_scale \
            and a.first_scale * b.first_scale / out.first_scale >= 1.0:
        return 3
    return 2 if first == T.INT8 else 1


def _add(s: OpSignature) -> int:
    first = s.input(0).type
    if first == T.FLOAT16:
        return 6
    if first == T.INT16 and not s.input(0).has_quantization:
        return 5
    if first == T.INT64:
        return 4
    if first == T.INT16 and s.output(0).type == T.INT16 and not s.option("potScaleInt16", True):
        return 3
    return 2 if first == T.INT8 else 1


def _broadcasts_above_4d(s: OpSignature) -> bool:
    return len(s.inputs) >= 2 and s.input(0).dims != s.input(1).dims and max(len(t.dims) for t in s.inputs) > 4


def _sub(s: OpSignature) -> int:
    first = s.input(0).type
    if first == T.INT16 and s.output(0).type == T.INT16 and not s.option("potScaleInt16", True):
        return 5
    if first == T.INT64:
        return 4
    if _broadcasts_above_4d(s):
        return 3
    return 2 if first == T.INT8 else 1


def _div(s: OpSignature) -> int:
    return 2 if _broadcasts_above_4d(s) else 1


def _maximum_minimum(s: OpSignature) -> int:
    if s.input(0).type == T.INT16 and s.output(0).type == T.INT16:
        return 4
    if _broadcasts_above_4d(s):
        return 3
    return 2 if s.input(0).type == T.INT8 else 1


def _dequantize(s: OpSignature) -> int:
    source = s.input(0)
    if source.type == T.UINT4:
        return 8
    if source.type == T.INT2:
        return 7
    if source.type == T.INT4:
        return 6
    if source.type in (T.INT16, T.FLOAT16):
        return 3
    if source.type == T.INT8:
        axis = source.quantized_dimension
        per_channel = source.scales > 1 and axis < len(source.dims) and source.dims[axis] == source.scales
        return 5 if per_channel else 2
    return 1


def _quantize(s: OpSignature) -> int:
    source, target = s.input(0), s.output(0)
    if T.UINT4 in (source.type, target.type):
        return 5
    if T.INT4 in (source.type, target.type):
        return 4
    axis = target.quantized_dimension
    if target.scales > 1 and axis < len(target.dims) and target.dims[axis] == target.scales:
        return 3
    return 2 if target.type == T.INT16 else 1


def _strided_slice(s: OpSignature) -> int:
    if s.option("offset", False):
        return 8
    first = s.input(0).type
    if first == T.UINT32:
        return 7
    if s.option("ellipsisMask", 0) or s.option("newAxisMask", 0):
        return 6
    if first == T.STRING:
        return 5
    if len(s.input(0).dims) > 4:
        return 4
    if first == T.BOOL:
        return 3
    return 2 if first == T.INT8 else 1


def _cast(s: OpSignature) -> int:
    types = (s.input(0).type, s.output(0).type)
    if T.INT2 in types or T.UINT4 in types:
        return 8
    if T.BFLOAT16 in types:
        return 7
    if types == (T.INT4, T.FLOAT32):
        return 6
    if T.FLOAT64 in types or T.FLOAT16 in types:
        return 5
    if T.UINT16 in types:
        return 4
    if T.INT8 in types:
        return 3
    return 2 if T.UINT32 in types else 1


def _pad(s: OpSignature) -> int:
    first = s.input(0)
    if first.type == T.BOOL:
        return 5
    if len(first.dims) > 4:
        return 4
    return {T.INT16: 3, T.INT8: 2}.get(first.type, 1)


def _concatenation(s: OpSignature) -> int:
    return {T.INT4: 5, T.UINT32: 4, T.INT16: 3, T.INT8: 2}.get(s.input(0).type, 1)


def _pack(s: OpSignature) -> int:
    first = s.input(0).type
    if first == T.INT8:
        return 2
    if first == T.INT16 and s.output(0).type == T.INT16:
        return 3
    return 4 if first == T.UINT32 else 1


def _transpose(s: OpSignature) -> int:
    first = s.input(0)
    if len(first.dims) > 6 or first.type == T.BFLOAT16:
        return 8
    if first.type == T.INT4:
        return 7
    if len(first.dims) > 5:
        return 6
    if first.type == T.INT16:
        return 5
    if len(first.dims) > 4:
        return 4
    return {T.BOOL: 3, T.INT8: 2}.get(first.type, 1)


def _batch_matmul(s: OpSignature) -> int:
    first = s.input(0).type
    if first == T.INT16:
        return 3
    if first == T.INT8:
        return 2
    if (first, s.input(1).type, s.output(0).type) == (T.FLOAT32, T.INT8, T.FLOAT32) \
            and s.option("asymmetricQuantizeInputs", False):
        return 4
    return 1


def _int16_int8(s: OpSignature) -> int:
    """SOFTMAX, MEAN, MIRROR_PAD, REDUCE_MAX, REDUCE_MIN, RELU6, RSQRT."""
    return {T.INT16: 3, T.INT8: 2}.get(s.input(0).type, 1)


def _pool(s: OpSignature) -> int:
    """MAX_POOL_2D, AVERAGE_POOL_2D; also TANH and LOGISTIC."""
    if s.input(0).type == T.INT16 and s.output(0).type == T.INT16:
        return 3
    return 2 if s.input(0).type == T.INT8 else 1


def _int8_only(s: OpSignature) -> int:
    """SUM, LOG_SOFTMAX, GREATER, LESS_EQUAL, SQUARED_DIFFERENCE, SPACE/DEPTH_TO_..., SPLIT_V."""
    return 2 if s.input(0).type == T.INT8 else 1


def _int8_or_int16(s: OpSignature) -> int:
    """EXP, LOG, REDUCE_PROD, SQRT."""
    return 2 if s.input(0).type in (T.INT8, T.INT16) else 1


def _relu(s: OpSignature) -> int:
    return {T.INT16: 3, T.INT8: 2, T.UINT8: 2}.get(s.input(0).type, 1)


def _less_greater_equal(s: OpSignature) -> int:
    return {T.INT16: 3, T.INT8: 2}.get(s.input(0).type, 1)


def _equal(s: OpSignature) -> int:
    return {T.INT16: 5, T.STRING: 3, T.INT8: 2}.get(s.input(0).type, 1)


def _resize_bilinear(s: OpSignature) -> int:
    if s.input(0).type == T.INT16:
        return 4
    if s.option("halfPixelCenters", False):
        return 3
    return 2 if s.input(0).type == T.INT8 else 1


def _only_version_1(s: OpSignature) -> int:
    """Ops op_version.cc leaves at its default: the runtime table lists version 1 only."""
    return 1


RULES: dict[int, Callable[[OpSignature], int]] = {
    Op.CONV_2D: _conv_2d, Op.DEPTHWISE_CONV_2D: _depthwise_conv_2d,
    Op.FULLY_CONNECTED: _fully_connected, Op.BATCH_MATMUL: _batch_matmul,
    Op.ADD: _add, Op.SUB: _sub, Op.MUL: _mul, Op.DIV: _div,
    Op.MAXIMUM: _maximum_minimum, Op.MINIMUM: _maximum_minimum,
    Op.DEQUANTIZE: _dequantize, Op.QUANTIZE: _quantize, Op.CAST: _cast,
    Op.STRIDED_SLICE: _strided_slice, Op.PAD: _pad, Op.PADV2: _pad,
    Op.CONCATENATION: _concatenation, Op.PACK: _pack, Op.TRANSPOSE: _transpose,
    Op.SOFTMAX: _int16_int8, Op.MEAN: _int16_int8, Op.REDUCE_MAX: _int16_int8,
    Op.REDUCE_MIN: _int16_int8, Op.RELU6: _int16_int8, Op.RSQRT: _int16_int8,
    Op.MAX_POOL_2D: _pool, Op.AVERAGE_POOL_2D: _pool, Op.TANH: _pool, Op.LOGISTIC: _pool,
    Op.SUM: _int8_only, Op.LOG_SOFTMAX: _int8_only, Op.GREATER: _int8_only,
    Op.LESS_EQUAL: _int8_only, Op.SQUARED_DIFFERENCE: _int8_only,
    Op.LESS: _less_greater_equal, Op.GREATER_EQUAL: _less_greater_equal, Op.EQUAL: _equal,
    Op.EXP: _int8_or_int16, Op.LOG: _int8_or_int16, Op.REDUCE_PROD: _int8_or_int16,
    Op.SQRT: _int8_or_int16, Op.RELU: _relu, Op.RESIZE_BILINEAR: _resize_bilinear,
    **{code: _only_version_1 for code in (
        Op.RESHAPE, Op.SHAPE, Op.NEG, Op.POW, Op.SQUARE, Op.ONE_HOT, Op.EXPAND_DIMS,
        Op.HARD_SWISH, Op.IF, Op.WHILE, Op.CALL_ONCE, Op.VAR_HANDLE, Op.READ_VARIABLE,
        Op.ASSIGN_VARIABLE)},
}

# (op, version) -> the first TFLite runtime with that kernel version, for the ops above.
RUNTIME_VERSIONS: dict[tuple[int, int], str] = {
    **{(Op.AVERAGE_POOL_2D, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "2.3.0"))},
    **{(Op.MAX_POOL_2D, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "2.3.0"))},
    **{(Op.BATCH_MATMUL, v): r for v, r in ((1, "2.3.0"), (2, "2.3.0"), (3, "2.4.0"), (4, "2.5.0"))},
    **{(Op.CONV_2D, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "1.14.0"), (4, "2.3.0"),
                                        (5, "2.4.0"), (6, "2.9.0"), (7, "2.11.0"), (8, "2.15.0"))},
    **{(Op.DEPTHWISE_CONV_2D, v): r for v, r in ((1, "1.5.0"), (2, "1.12.0"), (3, "1.14.0"), (4, "2.2.0"),
                                                  (5, "2.3.0"), (6, "2.3.0"), (7, "2.11.0"))},
    **{(Op.ADD, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "2.4.0"), (4, "2.6.0"),
                                    (5, "2.13.0"), (6, "2.23.0"))},
    **{(Op.SUB, v): r for v, r in ((1, "1.6.0"), (2, "1.14.0"), (3, "2.3.0"), (4, "2.4.0"), (5, "2.4.0"))},
    **{(Op.DIV, v): r for v, r in ((1, "1.6.0"), (2, "2.3.0"))},
    **{(Op.CAST, v): r for v, r in ((1, "1.5.0"), (2, "2.7.0"), (3, "2.8.0"), (4, "2.9.0"), (5, "2.12.0"),
                                     (6, "2.15.0"), (7, "2.17.0"), (8, "2.21.0"))},
    **{(Op.CONCATENATION, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "2.3.0"), (4, "2.14.0"),
                                              (5, "2.21.0"))},
    **{(Op.FULLY_CONNECTED, v): r for v, r in ((1, "1.5.0"), (2, "1.10.0"), (3, "1.14.0"), (4, "1.14.0"),
                                                (5, "2.0.0"), (6, "2.1.0"), (7, "2.3.0"), (8, "2.3.0"),
                                                (9, "2.3.0"), (10, "2.11.0"), (11, "2.15.0"), (12, "2.17.0"),
                                                (13, "2.18.0"), (14, "2.21.0"))},
    **{(Op.MAXIMUM, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"), (3, "2.3.0"), (4, "2.3.0"))},
    **{(Op.MINIMUM, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"), (3, "2.3.0"), (4, "2.3.0"))},
    **{(Op.MUL, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "1.15.0"), (4, "2.3.0"), (5, "2.6.0"),
                                    (6, "2.11.0"), (7, "2.13.0"), (8, "2.23.0"))},
    **{(Op.PAD, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "2.4.0"), (4, "2.6.0"), (5, "2.20.0"))},
    **{(Op.PADV2, v): r for v, r in ((1, "1.9.0"), (2, "1.14.0"), (3, "2.4.0"), (4, "2.6.0"), (5, "2.20.0"))},
    **{(Op.SOFTMAX, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "2.3.0"))},
    **{(Op.TRANSPOSE, v): r for v, r in ((1, "1.6.0"), (2, "1.14.0"), (3, "1.15.0"), (4, "2.3.0"), (5, "2.4.0"),
                                          (6, "2.12.0"), (7, "2.14.4"), (8, "2.22.0"))},
    **{(Op.MEAN, v): r for v, r in ((1, "1.6.0"), (2, "1.14.0"), (3, "2.4.0"))},
    **{(Op.SUM, v): r for v, r in ((1, "1.10.0"), (2, "1.15.0"))},
    **{(Op.REDUCE_MAX, v): r for v, r in ((1, "1.11.0"), (2, "1.14.0"), (3, "2.5.0"))},
    **{(Op.REDUCE_MIN, v): r for v, r in ((1, "1.11.0"), (2, "1.14.0"), (3, "2.5.0"))},
    **{(Op.REDUCE_PROD, v): r for v, r in ((1, "1.11.0"), (2, "2.6.0"))},
    **{(Op.RELU6, v): r for v, r in ((1, "1.5.0"), (2, "1.14.0"), (3, "2.5.0"))},
    **{(Op.RELU, v): r for v, r in ((1, "1.5.0"), (2, "2.1.0"), (3, "2.5.0"))},
    **{(Op.RESIZE_BILINEAR, v): r for v, r in ((1, "1.7.0"), (2, "1.14.0"), (3, "2.2.0"), (4, "2.5.0"))},
    **{(Op.STRIDED_SLICE, v): r for v, r in ((1, "1.6.0"), (2, "1.14.0"), (3, "2.1.0"), (4, "2.2.0"),
                                              (5, "2.5.0"), (6, "2.6.0"), (7, "2.14.0"), (8, "2.14.0"))},
    **{(Op.PACK, v): r for v, r in ((1, "1.11.0"), (2, "1.14.0"), (3, "2.3.0"), (4, "2.13.0"))},
    **{(Op.TANH, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"), (3, "2.3.0"))},
    **{(Op.LOGISTIC, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"), (3, "2.3.0"))},
    **{(Op.LOG_SOFTMAX, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"))},
    **{(Op.SQUARED_DIFFERENCE, v): r for v, r in ((1, "1.13.1"), (2, "2.5.0"))},
    **{(Op.DEQUANTIZE, v): r for v, r in ((1, "1.13.1"), (2, "1.14.0"), (3, "1.15.0"), (4, "2.2.0"),
                                           (5, "2.7.0"), (6, "2.18.0"), (7, "2.21.0"), (8, "2.22.0"))},
    **{(Op.QUANTIZE, v): r for v, r in ((1, "1.14.0"), (2, "1.15.0"), (3, "2.7.0"), (4, "2.21.0"),
                                         (5, "2.21.0"), (6, "2.21.0"))},
    **{(Op.EQUAL, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"), (3, "2.3.0"), (4, "2.13.0"), (5, "2.21.0"))},
    **{(Op.GREATER, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"))},
    **{(Op.GREATER_EQUAL, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"), (3, "2.13.0"))},
    **{(Op.LESS, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"), (3, "2.13.0"))},
    **{(Op.LESS_EQUAL, v): r for v, r in ((1, "1.14.0"), (2, "1.14.0"))},
    **{(Op.EXP, v): r for v, r in ((1, "1.7.0"), (2, "2.12.0"))},
    **{(Op.LOG, v): r for v, r in ((1, "1.14.0"), (2, "2.15.0"))},
    **{(Op.SQRT, v): r for v, r in ((1, "1.10.0"), (2, "2.21.0"))},
    **{(Op.RSQRT, v): r for v, r in ((1, "1.10.0"), (2, "2.5.0"), (3, "2.15.0"))},
    (Op.RESHAPE, 1): "1.5.0", (Op.SHAPE, 1): "1.10.0", (Op.NEG, 1): "1.9.0", (Op.POW, 1): "1.10.0",
    (Op.SQUARE, 1): "1.12.0", (Op.ONE_HOT, 1): "1.11.0", (Op.EXPAND_DIMS, 1): "1.10.0",
    (Op.HARD_SWISH, 1): "1.15.0", (Op.IF, 1): "1.15.0", (Op.WHILE, 1): "1.15.0",
    (Op.CALL_ONCE, 1): "2.5.0", (Op.VAR_HANDLE, 1): "2.6.0", (Op.READ_VARIABLE, 1): "2.6.0",
    (Op.ASSIGN_VARIABLE, 1): "2.6.0",
}


def required_version(model: model_io.ModelT, subgraph: schema.SubGraphT, op: schema.OperatorT) -> int | None:
    """The version op_version.cc gives this op, or None for ops without a rule here."""
    op_code = model.operatorCodes[op.opcodeIndex]
    if not model_io.is_builtin(op_code):
        return None
    rule = RULES.get(model_io.builtin_code(op_code))
    return None if rule is None else rule(op_signature(subgraph, op))


@dataclasses.dataclass(frozen=True)
class VersionChange:
    op: str
    from_version: int
    to_version: int
    ops: int                                  # operators that moved
    subgraphs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class VersionReport:
    changes: tuple[VersionChange, ...]
    no_rule: tuple[str, ...]                  # ops kept at their version: no rule here
    above_declared: tuple[str, ...]           # rule asks more than the file says: kept as declared
    op_codes_before: int
    op_codes_after: int
    versions: dict[str, tuple[int, ...]]      # op name -> versions present after lowering
    min_runtime_version: str                  # from the lowered versions (runtime_version.cc)


def lower_op_versions(model: model_io.ModelT, frozen_subgraphs: Iterable[int] = ()) -> VersionReport:
    """Sets every op to the lowest version its tensors and options need (never higher than the
    version it has), splits or merges op-code entries accordingly and drops unused ones (the
    interpreter resolves every entry of the table, used or not). Ops in `frozen_subgraphs` keep
    their version. Mutates `model`."""
    frozen = set(frozen_subgraphs)
    before = len(model.operatorCodes or [])
    new_codes: list[schema.OperatorCodeT] = []
    index_of: dict[tuple, int] = {}
    origin: dict[int, int] = {}              # new entry -> the first old entry it came from
    moved: dict[tuple, list[int]] = {}
    no_rule, above = set(), set()
    assignments = []
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        for op in subgraph.operators or []:
            op_code = model.operatorCodes[op.opcodeIndex]
            declared = op_code.version or 1
            version = declared
            if subgraph_index not in frozen:
                needed = required_version(model, subgraph, op)
                if needed is None:
                    no_rule.add(model_io.operator_name(op_code))
                elif needed > declared:
                    above.add(f"{model_io.operator_name(op_code)} v{declared} (rule: v{needed})")
                else:
                    version = needed
            lowered = model_io.normalized_op_code(op_code)
            lowered.version = version
            key = model_io.op_code_key(lowered)
            if key not in index_of:
                index_of[key] = len(new_codes)
                new_codes.append(lowered)
            origin[index_of[key]] = min(origin.get(index_of[key], op.opcodeIndex), op.opcodeIndex)
            assignments.append((op, index_of[key]))
            if version != declared:
                moved.setdefault((model_io.operator_name(op_code), declared, version), []).append(subgraph_index)
    for op, index in assignments:
        op.opcodeIndex = index
    model.operatorCodes = _in_stable_order(new_codes, origin, model)
    changes = tuple(VersionChange(name, old, new, len(where), tuple(sorted(set(where))))
                    for (name, old, new), where in sorted(moved.items()))
    versions: dict[str, set[int]] = {}
    for op_code in model.operatorCodes:
        versions.setdefault(model_io.operator_name(op_code), set()).add(op_code.version)
    return VersionReport(changes, tuple(sorted(no_rule)), tuple(sorted(above)), before,
                         len(model.operatorCodes), {k: tuple(sorted(v)) for k, v in sorted(versions.items())},
                         min_runtime_version(model))


def _in_stable_order(codes: list[schema.OperatorCodeT], origin: dict[int, int],
                     model: model_io.ModelT) -> list[schema.OperatorCodeT]:
    """The new table in the old table's order (split entries by version), op indices remapped:
    a model that needs no change keeps its table as it was."""
    order = sorted(range(len(codes)), key=lambda i: (origin[i], codes[i].version))
    remap = {old: new for new, old in enumerate(order)}
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            op.opcodeIndex = remap[op.opcodeIndex]
    return [codes[i] for i in order]


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def min_runtime_version(model: model_io.ModelT) -> str:
    """The newest 'first runtime' over the ops used, as runtime_version.cc computes it (ops or
    versions missing from its table are skipped, as there)."""
    newest = ""
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            op_code = model.operatorCodes[op.opcodeIndex]
            runtime = RUNTIME_VERSIONS.get((model_io.builtin_code(op_code), op_code.version or 1), "")
            if runtime and version_tuple(runtime) > version_tuple(newest):
                newest = runtime
    return newest


def read_min_runtime_version(model: model_io.ModelT) -> str | None:
    for entry in model.metadata or []:
        if entry.name == MIN_RUNTIME_VERSION:
            return model_io.buffer_bytes(model, entry.buffer).rstrip(b"\0").decode(errors="replace")
    return None


def set_min_runtime_version(model: model_io.ModelT, version: str) -> None:
    """Writes the `min_runtime_version` metadata as the converter does: a 16-byte buffer holding
    the NUL-padded string (the C++ writer overwrites that buffer in place, so it keeps it)."""
    data = version.encode()
    if not version or len(data) >= _MIN_RUNTIME_BYTES or not all(p.isdigit() for p in version.split(".")):
        raise InvalidInputError(f"min_runtime_version '{version}' must be a dotted version under 16 bytes")
    padded = model_io.make_buffer(data.ljust(_MIN_RUNTIME_BYTES, b"\0"))
    if model.metadata is None:
        model.metadata = []
    entry = next((e for e in model.metadata if e.name == MIN_RUNTIME_VERSION), None)
    if entry is not None and entry.buffer > 0 and _references(model, entry.buffer) == 1:
        model.buffers[entry.buffer] = padded
        return
    model.buffers.append(padded)
    if entry is None:
        entry = schema.MetadataT()
        entry.name = MIN_RUNTIME_VERSION
        model.metadata.append(entry)
    entry.buffer = len(model.buffers) - 1


def _references(model: model_io.ModelT, buffer: int) -> int:
    """How many tensors and metadata entries use a buffer."""
    count = sum(1 for e in model.metadata or [] if e.buffer == buffer)
    return count + sum(1 for g in model.subgraphs for t in g.tensors or [] if t.buffer == buffer)
