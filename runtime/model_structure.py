"""Structure checks of a .tflite FlatBuffer: every index in range (op codes, tensors, buffers,
subgraphs named by ops and signatures), names UTF-8, known op codes and tensor types, shapes
that agree with their signature and stay allocatable, constants whose bytes match their shape,
quantization parameters the kernels accept, op options whose zero value makes a kernel divide
by zero (strides, dilations, filter and block sizes) or that name the subgraph an op runs, and
subgraph calls without a cycle.

LiteRT trusts all of it: a damaged file that breaks one of these rules can abort the process
(double free, SIGSEGV, SIGFPE) instead of failing with an error. The compiler runs the checks
on every base it reads (compiler/flatbuffer/model_io.py); the runtime runs them on a model whose
digest it did not check (runtime/interpreter.py). The C++ runtime checks the same rules
(runtime/cpp/src/model_structure.cc).

numpy only: the FlatBuffer is read with the schema's generated accessors from ai_edge_litert
(TensorFlow's as a fallback), field by field; only the fields checked are read (unpacking the
object API of a MobileNetV2 took ~80 ms here, 10x the digest check it stands in for).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.runtime.errors import InvalidInputError

# No tensor of an on-device model comes near this; a flipped bit in a dimension does (the
# compiler would try to allocate it: 72 GiB for one flip measured).
MAX_TENSOR_ELEMENTS = 2**30


def schema():
    """The TFLite schema's generated Python module: LiteRT's, else TensorFlow's."""
    try:
        from ai_edge_litert import schema_py_generated  # noqa: PLC0415
    except ImportError:
        from tensorflow.lite.python import schema_py_generated  # noqa: PLC0415
    return schema_py_generated


_SCHEMA = schema()
_TensorType = _SCHEMA.TensorType
_OPERATOR_NAMES = {value: name for name, value in vars(_SCHEMA.BuiltinOperator).items() if not name.startswith("_")}
_TENSOR_TYPES = {value for name, value in vars(_TensorType).items() if not name.startswith("_")}
_FILE_IDENTIFIER = b"TFL3"
# Bytes per element of the types whose constant buffers hold exactly shape-product elements.
_ELEMENT_BYTES = {_TensorType.FLOAT32: 4, _TensorType.FLOAT16: 2, _TensorType.INT32: 4, _TensorType.UINT8: 1,
                  _TensorType.INT64: 8, _TensorType.BOOL: 1, _TensorType.INT16: 2, _TensorType.INT8: 1,
                  _TensorType.FLOAT64: 8, _TensorType.UINT32: 4}
_SMALLEST_NORMAL_FLOAT32 = float(np.finfo(np.float32).tiny)  # 2**-126
_ZERO_POINT_RANGES = {_TensorType.INT8: (-128, 127), _TensorType.UINT8: (0, 255), _TensorType.INT16: (-32768, 32767)}
# Options a kernel divides by or indexes with (the C++ runtime's list): op -> (options type,
# fields that must be >= 1). Without its options such a kernel reads zeros; an op that runs
# another subgraph (CALL_ONCE, IF, WHILE, CALL) would run subgraph 0.
_REQUIRED_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", ("strideW", "strideH", "dilationWFactor", "dilationHFactor")),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ("strideW", "strideH", "dilationWFactor", "dilationHFactor")),
    "AVERAGE_POOL_2D": ("Pool2DOptions", ("strideW", "strideH", "filterWidth", "filterHeight")),
    "MAX_POOL_2D": ("Pool2DOptions", ("strideW", "strideH", "filterWidth", "filterHeight")),
    "L2_POOL_2D": ("Pool2DOptions", ("strideW", "strideH", "filterWidth", "filterHeight")),
    "TRANSPOSE_CONV": ("TransposeConvOptions", ("strideW", "strideH")),
    "CONV_3D": ("Conv3DOptions", ("strideD", "strideW", "strideH", "dilationDFactor", "dilationWFactor",
                                  "dilationHFactor")),
    "CONV_3D_TRANSPOSE": ("Conv3DOptions", ("strideD", "strideW", "strideH", "dilationDFactor",
                                            "dilationWFactor", "dilationHFactor")),
    "SPACE_TO_DEPTH": ("SpaceToDepthOptions", ("blockSize",)),
    "DEPTH_TO_SPACE": ("DepthToSpaceOptions", ("blockSize",)),
    "CALL_ONCE": ("CallOnceOptions", ()),
    "IF": ("IfOptions", ()),
    "WHILE": ("WhileOptions", ()),
    "CALL": ("CallOptions", ()),
}


def _option_types(union) -> dict[int, str]:
    return {value: name for name, value in vars(union).items() if not name.startswith("_") and value}


_OPTIONS_NAMES = _option_types(_SCHEMA.BuiltinOptions)
_OPTIONS2_NAMES = _option_types(getattr(_SCHEMA, "BuiltinOptions2", object))


def _names_a_subgraph(options_name: str) -> bool:
    """Whether an options table holds a subgraph index (IF, WHILE, CALL_ONCE, StableHLO ops)."""
    options_class = getattr(_SCHEMA, options_name + "T", None)
    return options_class is not None and any("subgraph" in field.lower() for field in vars(options_class()))


# Options read per op (the rest are never unpacked): those checked above and those naming a subgraph.
_READ_OPTIONS = {name for name in _OPTIONS_NAMES.values() if _names_a_subgraph(name)} | \
    {options for options, _ in _REQUIRED_OPTIONS.values()} | {"VarHandleOptions"}
_READ_OPTIONS2 = {name for name in _OPTIONS2_NAMES.values() if _names_a_subgraph(name)}


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    type: int
    buffer: int
    is_variable: bool
    shape: list[int]
    signature: list[int]


@dataclasses.dataclass(frozen=True)
class OpRecord:
    name: str                 # the builtin op's name
    inputs: list[int]
    outputs: list[int]
    options: object           # the object API's options record, for the ops whose options are read
    where: str                # "op N of subgraph M"


@dataclasses.dataclass(frozen=True)
class GraphRecord:
    inputs: list[int]
    outputs: list[int]
    tensors: list[TensorRecord]
    ops: list[OpRecord]


@dataclasses.dataclass(frozen=True)
class BufferRecord:
    has_data: bool            # a data vector is present (even an empty one)
    data_bytes: int
    offset: int               # > 1: the data lies after the FlatBuffer
    table: object             # the schema accessor (its DataAsNumpy)


def _ints(indices) -> list[int]:
    return [] if isinstance(indices, int) else indices.tolist()  # the accessors return 0 when absent


def check_structure(model_bytes: bytes, source: str, dataflow: bool = False) -> None:
    """Refuses a damaged-but-parsable model (a flipped bit, a truncation the FlatBuffer reader
    did not notice) with one InvalidInputError line naming `source` and the problem. With
    `dataflow`, also the rules of runtime/model_dataflow.py (what the runtime checks on a model
    whose digest it did not check)."""
    if len(model_bytes) < 8 or model_bytes[4:8] != _FILE_IDENTIFIER:
        raise InvalidInputError(f"{source}: not a TFLite model (expected the 'TFL3' file identifier at byte 4)")
    try:
        checker = _Checker(model_bytes, source)
        checker.run()
        if dataflow:
            from tflite_transfer.runtime import model_dataflow  # noqa: PLC0415 (it reads this module's records)

            model_dataflow.check_dataflow(checker.graphs, checker.buffer_records, checker.fail)
    except InvalidInputError:
        raise
    except Exception as error:  # noqa: BLE001 (flatbuffers raises struct/index/type errors on damage)
        raise InvalidInputError(
            f"{source}: truncated or corrupt TFLite file ({len(model_bytes)} bytes; its FlatBuffer does not "
            f"parse: {type(error).__name__}); copy or compile it again") from None


class _Checker:
    def __init__(self, model_bytes: bytes, source: str):
        self.data = bytearray(model_bytes)
        self.model = _SCHEMA.Model.GetRootAs(self.data, 0)
        self.source, self.corrupt = source, f"{source}: corrupt TFLite file:"

    def fail(self, problem: str):
        raise InvalidInputError(f"{self.corrupt} {problem}")

    def count(self, length: int, what: str) -> int:
        """A vector's length, bounded by the file (each element takes at least 4 bytes)."""
        if length > len(self.data) // 4:
            self.fail(f"{what} claims {length} entries, more than the file can hold")
        return length

    def run(self) -> None:
        model = self.model
        self.subgraphs = self.count(model.SubgraphsLength(), "the subgraph list")
        if not self.subgraphs:
            raise InvalidInputError(f"{self.source}: TFLite model has no subgraph")
        self.buffers = [model.Buffers(index) for index in range(self.count(model.BuffersLength(), "the buffer list"))]
        self.buffer_records = []
        for index, buffer in enumerate(self.buffers):
            if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > len(self.data):
                self.fail(f"buffer {index} lies outside the file")
            self.buffer_records.append(BufferRecord(not buffer.DataIsNone(), buffer.DataLength(), buffer.Offset(),
                                                    buffer))
        self.op_names = []
        for index in range(self.count(model.OperatorCodesLength(), "the op code list")):
            op_code = model.OperatorCodes(index)
            code = max(op_code.BuiltinCode(), op_code.DeprecatedBuiltinCode())  # ops >= 127: the larger
            if code not in _OPERATOR_NAMES:
                self.fail(f"op code {code} is no TFLite builtin this schema knows")
            self.op_names.append(_OPERATOR_NAMES[code])
        self.tensor_counts, self.graphs, self.calls = [], [], {}
        for index in range(self.subgraphs):
            self.check_subgraph(index, model.Subgraphs(index))
        self.check_no_recursion()
        for index in range(self.count(model.SignatureDefsLength(), "the signature list")):
            self.check_signature(model.SignatureDefs(index))
        for index in range(self.count(model.MetadataLength(), "the metadata list")):
            entry = model.Metadata(index)
            self.check_name(entry.Name(), "a metadata entry")
            if entry.Buffer() >= len(self.buffers):
                self.fail(f"metadata entry refers to missing buffer {entry.Buffer()}")

    def check_no_recursion(self) -> None:
        """Subgraphs call subgraphs (IF, WHILE, CALL_ONCE, CALL) without a cycle: TFLite runs a
        call by recursion, so a subgraph reached again from itself overflows the stack (a flipped
        bit that pointed `infer`'s IF at `infer` itself was a SIGSEGV)."""
        state = {}  # subgraph -> 1 while its callees are being visited, 2 when done
        for root in range(self.subgraphs):
            stack = [(root, iter(self.calls.get(root, {}).items()))]
            state[root] = state.get(root) or 1
            if state[root] == 2:
                continue
            while stack:
                caller, callees = stack[-1]
                for called, what in callees:
                    if state.get(called) == 1:
                        self.fail(f"{what} runs subgraph {called}, which is already running (a call cycle)")
                    if state.get(called) is None:
                        state[called] = 1
                        stack.append((called, iter(self.calls.get(called, {}).items())))
                        break
                else:
                    state[caller] = 2
                    stack.pop()

    def check_name(self, name, where: str) -> None:
        if name is not None:
            try:
                bytes(name).decode("utf-8")
            except UnicodeDecodeError:
                self.fail(f"{where} has a name that is not UTF-8 text")

    def check_indices(self, indices, count: int, what: str, optional: bool) -> None:
        if isinstance(indices, int):  # the accessors return 0 for an absent vector
            return
        if len(indices) and (indices.max() >= count or indices.min() < (-1 if optional else 0)):
            bad = indices[(indices >= count) | (indices < (-1 if optional else 0))]
            self.fail(f"{what} refers to tensor {bad[0]}, which does not exist ({count} tensors)")

    def check_subgraph(self, index: int, subgraph) -> None:
        count = self.count(subgraph.TensorsLength(), f"subgraph {index}'s tensor list")
        self.tensor_counts.append(count)
        graph = GraphRecord(_ints(subgraph.InputsAsNumpy()), _ints(subgraph.OutputsAsNumpy()), [], [])
        self.graphs.append(graph)
        self.check_indices(subgraph.InputsAsNumpy(), count, f"an input of subgraph {index}", False)
        self.check_indices(subgraph.OutputsAsNumpy(), count, f"an output of subgraph {index}", False)
        for position in range(count):
            graph.tensors.append(self.check_tensor(subgraph.Tensors(position), f"tensor {position} of subgraph {index}"))
        for position in range(self.count(subgraph.OperatorsLength(), f"subgraph {index}'s op list")):
            op, what = subgraph.Operators(position), f"op {position} of subgraph {index}"
            code_index = op.OpcodeIndex()
            if code_index >= len(self.op_names):
                self.fail(f"{what} uses missing op code {code_index}")
            inputs, outputs, intermediates = op.InputsAsNumpy(), op.OutputsAsNumpy(), op.IntermediatesAsNumpy()
            for indices in (inputs, outputs, intermediates):
                self.check_indices(indices, count, what, True)
            options = self.check_options(op, self.op_names[code_index], what)
            graph.ops.append(OpRecord(self.op_names[code_index], _ints(inputs), _ints(outputs), options, what))

    def check_tensor(self, tensor, where: str) -> None:
        buffer = tensor.Buffer()
        if buffer >= len(self.buffers):
            self.fail(f"{where} refers to missing buffer {buffer}")
        name, kind = tensor.Name(), tensor.Type()
        self.check_name(name, where)
        if kind not in _TENSOR_TYPES:
            self.fail(f"{where} has unknown type {kind}")
        where = f"tensor '{(name or b'').decode()}'"
        shape = tensor.ShapeAsNumpy()  # 0 when absent
        shape = [] if isinstance(shape, int) else shape.tolist()
        if any(size < 0 for size in shape):
            self.fail(f"{where} has a negative dimension in its shape {shape}")
        signature = tensor.ShapeSignatureAsNumpy()
        signature = [] if isinstance(signature, int) else signature.tolist()
        if signature and (len(signature) != len(shape) or any(s not in (-1, d) for s, d in zip(signature, shape))):
            self.fail(f"{where} has shape {shape} but shape signature {signature}")
        elements = 1
        for size in shape:  # as the C++ reader counts: refused as soon as a prefix passes the bound
            elements *= size
            if elements > MAX_TENSOR_ELEMENTS:
                self.fail(f"{where} has shape {shape[:8]}: more than {MAX_TENSOR_ELEMENTS} elements")
        # A constant's bytes must match its shape: a flipped bit in a shape or a size otherwise
        # reaches the interpreter ("required_bytes <= bytes was not true", element-count overflow).
        held = self.buffers[buffer].DataLength() if buffer else 0
        if held and kind in _ELEMENT_BYTES and tensor.Sparsity() is None:
            needed = elements * _ELEMENT_BYTES[kind]
            if needed != held:
                self.fail(f"{where} {shape} needs {needed} bytes, its buffer holds {held}")
        quantization = tensor.Quantization()
        if quantization is not None:
            self.check_quantization(quantization, kind, shape, where)
        return TensorRecord(kind, buffer, tensor.IsVariable(), shape, signature)

    def check_quantization(self, quantization, kind: int, shape: list[int], where: str) -> None:
        """Parameters the kernels accept: a zero point outside int8 crashed LiteRT with
        SIGSEGV; a per-channel axis outside the shape is refused by it with a raw ValueError."""
        scales = quantization.ScaleAsNumpy()  # 0 when absent
        if isinstance(scales, int) or not len(scales):
            return
        zero_points = quantization.ZeroPointAsNumpy()
        zero_points = np.zeros(0, np.int64) if isinstance(zero_points, int) else zero_points
        # LiteRT's default delegate (XNNPACK) segfaults on a scale of 0 or a subnormal one (below
        # 2**-126: measured with 1.1e-38 and 3e-45 on a QUANTIZE input; 1.2e-38 runs); the
        # builtin kernels run them. Real models' scales are around 1e-5..1e2.
        if not (np.isfinite(scales).all() and (scales >= _SMALLEST_NORMAL_FLOAT32).all()):
            self.fail(f"{where} has quantization scales that are not finite normal numbers > 0 "
                      f"(smallest {scales.min():g})")
        if len(zero_points) != len(scales):
            self.fail(f"{where} has {len(scales)} quantization scales but {len(zero_points)} zero points")
        low, high = _ZERO_POINT_RANGES.get(kind, (-2**31, 2**31 - 1))
        if len(zero_points) and (zero_points.min() < low or zero_points.max() > high):
            self.fail(f"{where} has zero points outside [{low}, {high}]")
        if len(scales) > 1:
            axis = quantization.QuantizedDimension()
            if not 0 <= axis < len(shape) or shape[axis] != len(scales):
                self.fail(f"{where} has {len(scales)} per-channel scales along axis {axis} of shape {shape}")

    def check_options(self, op, op_name: str, what: str) -> None:
        options = self.options(_OPTIONS_NAMES.get(op.BuiltinOptionsType()), _READ_OPTIONS,
                               _SCHEMA.BuiltinOptionsCreator, op.BuiltinOptionsType(), op.BuiltinOptions())
        if op_name in _REQUIRED_OPTIONS:
            options_name, fields = _REQUIRED_OPTIONS[op_name]
            if _OPTIONS_NAMES.get(op.BuiltinOptionsType()) != options_name or options is None:
                self.fail(f"{what} ({op_name}) lacks its {options_name} (a kernel would read zeros)")
            for field in fields:
                if getattr(options, field) < 1:
                    self.fail(f"{what} ({op_name}) has {field} {getattr(options, field)} (must be >= 1)")
        options2 = None
        if hasattr(op, "BuiltinOptions2Type"):
            options2 = self.options(_OPTIONS2_NAMES.get(op.BuiltinOptions2Type()), _READ_OPTIONS2,
                                    _SCHEMA.BuiltinOptions2Creator, op.BuiltinOptions2Type(), op.BuiltinOptions2())
        for called in called_subgraphs(options, options2):
            if not 0 <= called < self.subgraphs:
                self.fail(f"{what} calls missing subgraph {called}")
            self.calls.setdefault(len(self.graphs) - 1, {}).setdefault(called, what)
        return options

    @staticmethod
    def options(name, wanted: set, creator, union_type: int, table):
        """The op's options as the object API's small record, only when they are checked."""
        if name not in wanted or table is None:
            return None
        return creator(union_type, table)

    def check_signature(self, signature) -> None:
        where = "a signature"
        self.check_name(signature.SignatureKey(), where)
        if not 0 <= signature.SubgraphIndex() < self.subgraphs:
            self.fail(f"{where} refers to missing subgraph {signature.SubgraphIndex()}")
        count = self.tensor_counts[signature.SubgraphIndex()]
        maps = [signature.Inputs(k) for k in range(self.count(signature.InputsLength(), "a signature's inputs"))]
        maps += [signature.Outputs(k) for k in range(self.count(signature.OutputsLength(), "a signature's outputs"))]
        for tensor_map in maps:
            self.check_name(tensor_map.Name(), where)
            if tensor_map.TensorIndex() >= count:
                self.fail(f"{where} refers to missing tensor {tensor_map.TensorIndex()}")


def called_subgraphs(*options_records) -> list[int]:
    """The subgraph indices in op options records (object API): every such field has
    'subgraph' in its name (IF, WHILE, CALL_ONCE, CALL, StableHLO ops)."""
    called = []
    for options in options_records:
        if options is None:
            continue
        for field, value in vars(options).items():
            if "subgraph" in field.lower() and value is not None:
                called.extend([int(value)] if np.ndim(value) == 0 else [int(v) for v in value])
    return called
