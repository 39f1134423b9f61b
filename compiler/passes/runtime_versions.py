"""Which TFLite runtime first has each op version, and the `min_runtime_version` metadata
the converter writes: the newest 'first runtime' over the ops a model uses.

The table is `FindMinimumRuntimeVersionForOp` in
tensorflow/compiler/mlir/lite/tools/versioning/runtime_version.cc (03f49db5), for the ops
op_version_rules.py knows.
"""

from __future__ import annotations

from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.errors import InvalidInputError

Op = model_io.BuiltinOperator
MIN_RUNTIME_VERSION = b"min_runtime_version"
_MIN_RUNTIME_BYTES = 16  # the metadata buffer the converter writes: a NUL-padded string

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



def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def min_runtime_version(model: model_io.ModelT) -> str:
    """The newest 'first runtime' over the ops used, as runtime_version.cc computes it (ops or
    versions missing from its table are skipped, as there)."""
    newest = ""
    for _, op in graph.operators(model):
        op_code = model.operatorCodes[op.opcodeIndex]
        runtime = RUNTIME_VERSIONS.get((model_io.builtin_code(op_code), op_code.version or 1), "")
        if runtime and version_tuple(runtime) > version_tuple(newest):
            newest = runtime
    return newest


def read_min_runtime_version(model: model_io.ModelT) -> str | None:
    data = graph.get_metadata(model, MIN_RUNTIME_VERSION)
    return None if data is None else data.rstrip(b"\0").decode(errors="replace")


def set_min_runtime_version(model: model_io.ModelT, version: str) -> None:
    """Writes the `min_runtime_version` metadata as the converter does: a 16-byte buffer holding
    the NUL-padded string (the C++ writer overwrites that buffer in place, so it keeps it)."""
    data = version.encode()
    if not version or len(data) >= _MIN_RUNTIME_BYTES or not all(p.isdigit() for p in version.split(".")):
        raise InvalidInputError(f"min_runtime_version '{version}' must be a dotted version under 16 bytes")
    graph.set_metadata(model, MIN_RUNTIME_VERSION, data.ljust(_MIN_RUNTIME_BYTES, b"\0"))
