"""The op-version rules of TFLite, one function per op: the lowest version an op's tensors
and options need.

They are TFLite's own, for the ops our models contain (bases: int8/uint8 CNNs; heads: float
training graphs): `GetBuiltinOperatorVersion` and the `ext_options` of `GetOpSignature` in
tensorflow/compiler/mlir/lite/tools/versioning/op_version.cc (commit
03f49db5a23ec2b22a59f3f3d72e5744469ea30b) and op_signature.cc (2b746b8f), the same rules the
TF 2.21 converter applies. Ops without a rule here keep their version (op_versions.py).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tflite_transfer.compiler.flatbuffer import model_io

Op = model_io.BuiltinOperator
T = model_io.TensorType


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


def _spec(subgraph: model_io.schema.SubGraphT, index: int) -> TensorSpec:
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


def op_signature(subgraph: model_io.schema.SubGraphT, op: model_io.schema.OperatorT) -> OpSignature:
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
    if s.option("weightsFormat", 0) == model_io.schema.FullyConnectedOptionsWeightsFormat.SHUFFLED4x16INT8:
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



def required_version(model: model_io.ModelT, subgraph: model_io.schema.SubGraphT, op: model_io.schema.OperatorT) -> int | None:
    """The version op_version.cc gives this op, or None for ops without a rule here."""
    op_code = model.operatorCodes[op.opcodeIndex]
    if not model_io.is_builtin(op_code):
        return None
    rule = RULES.get(model_io.builtin_code(op_code))
    return None if rule is None else rule(op_signature(subgraph, op))

