"""The rules of TFLite's flatbuffer verifier, checked on the bytes the compiler writes.

`tflite::Verify(buffer, size, BuiltinOpResolver, reporter)` (tensorflow/lite/core/tools/
verifier.cc) is what `FlatBufferModel::VerifyAndBuildFromBuffer`, MediaPipe's model loader and
careful C++ apps run before they build an interpreter: a file it refuses never reaches an app
that runs it, however well our own interpreters run it. This module mirrors its checks, in its
order and with its messages, so that no compile and no export writes such a file:
  - the model: file identifier "TFL3", schema version 3, subgraphs and buffers present;
  - per subgraph (VerifySubGraphConsistency): every op has input and output vectors and a
    valid op code; every input (other than the optional -1) is a subgraph input, a variable
    tensor, a constant, or the output of an earlier op; no output is a constant, a variable, a
    subgraph input or a second write of a tensor. A *constant* is a tensor on a buffer other
    than 0 that has a data vector, even an empty one (IsConstantTensor): an empty constant on
    buffer 0 is "not produced";
  - per tensor with a data vector (VerifyTensors): string tensors hold a valid offset table;
    numeric tensors hold exactly shape-product x element-size bytes (or what their sparsity
    parameters count), within 32 bits, and are of a type the verifier knows;
  - per op code (VerifyOps): a builtin code in range, no custom ops (ours are builtin-only),
    a version the builtin resolver registers (see `_check_op_codes`).
tests/cpp/verifier/ runs the real C++ verifier (Debian's TFLite 2.14) on every model kind.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from tflite_transfer.compiler.errors import VerificationError
from tflite_transfer.compiler.passes.runtime_versions import RUNTIME_VERSIONS

_UINT_MAX = 2**32 - 1
_MAX_FLATBUFFER_BYTES = 2**31 - 1      # FLATBUFFERS_MAX_BUFFER_SIZE (32-bit offsets)
_SCHEMA_VERSION = 3                    # TFLITE_SCHEMA_VERSION
_MAX_BUILTIN_CODE = max(v for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_"))
_OPERATOR_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_T = schema.TensorType
# Bytes per element in VerifyNumericTensorBuffer; any other type with data is "invalid type".
# (INT4 counts one byte per element there, as its TODO says, although values pack two a byte.)
_ELEMENT_BYTES = {_T.FLOAT32: 4, _T.FLOAT16: 2, _T.BFLOAT16: 2, _T.FLOAT64: 8, _T.INT32: 4,
                  _T.UINT32: 4, _T.INT4: 1, _T.UINT8: 1, _T.INT8: 1, _T.INT64: 8, _T.UINT64: 8,
                  _T.BOOL: 1, _T.INT16: 2, _T.UINT16: 2, _T.COMPLEX64: 8, _T.COMPLEX128: 16}
# Versions per builtin op the resolver registers: for the ops runtime_version.cc lists, exactly
# its versions (a version outside them exists in no TFLite runtime).
_KNOWN_VERSIONS: dict[int, set[int]] = {}
for (_code, _version) in RUNTIME_VERSIONS:
    _KNOWN_VERSIONS.setdefault(_code, set()).add(_version)


@dataclasses.dataclass(frozen=True)
class VerifierReport:
    subgraphs: int
    operators: int
    tensors: int
    constants: int           # tensors the verifier counts as constants (buffer with data)


def check_verifier_rules(model_bytes: bytes, source: str = "model") -> VerifierReport:
    """Raises VerificationError with the verifier's own message when `tflite::Verify` would
    refuse these bytes (appended associated files after the FlatBuffer are fine)."""
    def refuse(problem: str) -> VerificationError:
        return VerificationError(f"{source}: TFLite's flatbuffer verifier would refuse it: {problem}")

    if len(model_bytes) >= _MAX_FLATBUFFER_BYTES or len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise refuse("Invalid flatbuffer format (no 'TFL3' identifier, or 2 GB or more)")
    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        return _check_model(model, refuse)
    except VerificationError:
        raise
    except (IndexError, ValueError, TypeError, AttributeError, struct.error, OverflowError) as error:
        raise refuse(f"Invalid flatbuffer format ({type(error).__name__} while reading it)") from None


def _check_model(model, refuse) -> VerifierReport:
    if model.Version() != _SCHEMA_VERSION:
        raise refuse(f"Invalid model version {model.Version()}")
    if model.SubgraphsIsNone():
        raise refuse("Missing 'subgraphs' section.")
    buffers = None if model.BuffersIsNone() else model.BuffersLength()
    has_data = [not model.Buffers(i).DataIsNone() for i in range(buffers or 0)]
    operators = tensors = constants = 0
    for index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(index)
        constants += _check_subgraph(model, subgraph, index, has_data, refuse)
        operators += subgraph.OperatorsLength()
        tensors += subgraph.TensorsLength()
    if buffers is None:
        raise refuse("Missing 'buffers' section.")
    for index in range(model.SubgraphsLength()):
        _check_tensors(model, model.Subgraphs(index), buffers, refuse)
    _check_op_codes(model, refuse)
    return VerifierReport(model.SubgraphsLength(), operators, tensors, constants)


def _check_subgraph(model, subgraph, index: int, has_data: list[bool], refuse) -> int:
    """VerifySubGraphs + VerifySubGraphConsistency; returns the number of constants."""
    where = f"(subgraph {index} '{(subgraph.Name() or b'').decode(errors='replace')}')"
    if subgraph.OperatorsIsNone():
        raise refuse(f"Missing 'operators' section in subgraph. {where}")
    for position in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(position)
        if op.InputsIsNone():
            raise refuse(f"Missing 'inputs' for operator. {where} op {position}")
        if op.OutputsIsNone():
            raise refuse(f"Missing 'outputs' for operator. {where} op {position}")
    constant, variable = set(), set()
    for tensor_index in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(tensor_index)
        buffer = tensor.Buffer()
        if 0 < buffer < len(has_data) and has_data[buffer]:
            constant.add(tensor_index)
        elif tensor.IsVariable():
            variable.add(tensor_index)
    inputs = set(subgraph.InputsAsNumpy().tolist()) if not subgraph.InputsIsNone() else set()
    produced: set[int] = set()
    op_codes = 0 if model.OperatorCodesIsNone() else model.OperatorCodesLength()
    for position in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(position)
        if op.OpcodeIndex() >= op_codes:
            raise refuse(f"Operator {op.OpcodeIndex()} does not exist in model op codes {where}")
        name = _op_name(model.OperatorCodes(op.OpcodeIndex()))
        for tensor_index in _indices(op.InputsAsNumpy()):
            if tensor_index == -1:  # kTfLiteOptionalTensor
                continue
            if not (tensor_index in constant or tensor_index in variable or tensor_index in inputs
                    or tensor_index in produced):
                raise refuse(f"Input tensor {tensor_index} to op {position} ({name}) is not produced "
                             f"{where}{_why_not_produced(subgraph, position, tensor_index, has_data)}")
        for tensor_index in _indices(op.OutputsAsNumpy()):
            kind = ("a constant" if tensor_index in constant else "a variable" if tensor_index in variable
                    else "a subgraph input" if tensor_index in inputs
                    else "an output from another op. There is a cycle in the graph"
                    if tensor_index in produced else None)
            if kind:
                raise refuse(f"Output tensor {tensor_index} to op {position} ({name}) is {kind} {where}")
            produced.add(tensor_index)
    return len(constant)


def _why_not_produced(subgraph, position: int, tensor_index: int, has_data: list[bool]) -> str:
    if not 0 <= tensor_index < subgraph.TensorsLength():
        return ""
    tensor = subgraph.Tensors(tensor_index)
    label = f": tensor '{(tensor.Name() or b'').decode(errors='replace')}'"
    for later in range(position, subgraph.OperatorsLength()):
        if tensor_index in _indices(subgraph.Operators(later).OutputsAsNumpy()):
            return f"{label} is written only later, by op {later}"
    if tensor.Buffer() == 0:
        return (f"{label} is on buffer 0 (a constant, even an empty one, needs its own buffer with "
                "a data vector)")
    if tensor.Buffer() < len(has_data) and not has_data[tensor.Buffer()]:
        return f"{label} is on buffer {tensor.Buffer()}, which has no data vector"
    return label


def _check_tensors(model, subgraph, buffers: int, refuse) -> None:
    """VerifyTensors: the data of every tensor whose buffer has a data vector."""
    for tensor_index in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(tensor_index)
        buffer_index = tensor.Buffer()
        if buffer_index == 0:
            continue
        name = (tensor.Name() or b"").decode(errors="replace")
        if buffer_index >= buffers:
            raise refuse(f"Tensor {name} invalid buffer index: {buffer_index}")
        buffer = model.Buffers(buffer_index)
        if buffer.DataIsNone():
            continue  # computed at run time
        if tensor.Type() == _T.STRING:
            _check_string_data(name, buffer.DataAsNumpy().tobytes(), refuse)
        else:
            _check_numeric_data(tensor, name, buffer.DataLength(), refuse)


def _check_string_data(name: str, data: bytes, refuse) -> None:
    """VerifyStringTensorBuffer: [count, offsets..., end] little-endian uint32, then the bytes."""
    if len(data) < 4:
        raise refuse(f"String tensor {name} is invalid (empty)")
    count = struct.unpack_from("<I", data, 0)[0]
    if count > _UINT_MAX // 4 - 2:
        raise refuse(f"String tensor {name} has invalid num of string set: {count}")
    header = (count + 2) * 4
    if len(data) < header:
        raise refuse(f"String tensor {name} buffer requires at least {header} bytes, but is "
                     f"allocated with {len(data)} bytes")
    offsets = struct.unpack_from(f"<{count + 1}I", data, 4)
    if offsets[0] != header:
        raise refuse(f"String tensor {name} buffer initial offset must be: {header}")
    for position, offset in enumerate(offsets[1:], start=1):
        if offset < header or offset > len(data):  # the verifier compares against the header only
            raise refuse(f"String tensor {name} buffer is invalid: index {position}")
    if offsets[-1] != len(data):
        raise refuse(f"String tensor {name} buffer last offset must be {len(data)}")


def _check_numeric_data(tensor, name: str, size: int, refuse) -> None:
    """VerifyNumericTensorBuffer, in its unsigned 64-bit arithmetic."""
    if tensor.ShapeIsNone():
        return  # "Empty tensor. Avoid further checks."
    shape = tensor.ShapeAsNumpy().tolist()
    if tensor.Sparsity() is not None:
        elements = _count_sparse_elements(tensor, shape)
        if elements is None:
            raise refuse(f"Tensor {name} has invalid sparsity parameters")
        required = elements
    else:
        required = 1
        for dim in shape:
            required = (required * (dim % 2**64)) % 2**64  # a negative int dim wraps, as in C++
            if required > _UINT_MAX:
                raise refuse(f"Tensor {name} dimension overflow")
    if tensor.Type() not in _ELEMENT_BYTES:
        raise refuse(f"Tensor {name} invalid type: {tensor.Type()}")
    required *= _ELEMENT_BYTES[tensor.Type()]
    if required > _UINT_MAX:
        raise refuse(f"Tensor {name} dimension overflow")
    if required != size:
        raise refuse(f"Tensor {name} requires {required} bytes, but is allocated with {size} bytes buffer")


def _count_sparse_elements(tensor, shape: list[int]) -> int | None:
    """VerifyAndCountSparseElements + VerifyAndCountElements: the stored element count, or None
    when the sparsity parameters are inconsistent with the shape."""
    sparsity = schema.SparsityParametersT.InitFromObj(tensor.Sparsity())
    order = [int(v) for v in sparsity.traversalOrder] if sparsity.traversalOrder is not None else None
    levels = sparsity.dimMetadata
    if order is None or levels is None:
        return None
    rank, total = len(shape), len(order)
    if total < rank or len(levels) != total:
        return None
    block_rank = total - rank
    block_map = [int(v) for v in sparsity.blockMap] if sparsity.blockMap is not None else None
    if block_rank > 0 and (block_map is None or len(block_map) != block_rank):
        return None
    if sorted(order[:rank]) != list(range(rank)) or sorted(order[rank:]) != list(range(rank, total)):
        return None
    sizes = list(shape) + [0] * block_rank
    for i in range(block_rank):
        block_dim, block_size = order[i + rank], levels[i + rank].denseSize
        if not 0 <= block_dim < total or block_size <= 0:
            return None
        sizes[block_dim] = block_size
        if not 0 <= block_map[i] < total:
            return None
        sizes[block_map[i]] = int(sizes[block_map[i]] / block_size)  # C++ int division
    elements = 1
    for level, original_dim in zip(levels, order):
        if level.format == schema.DimensionType.DENSE:
            if level.denseSize != sizes[original_dim]:
                return None
            elements *= level.denseSize
            continue
        segments, indices = _sparse_vector(level.arraySegments), _sparse_vector(level.arrayIndices)
        if segments is None or indices is None or not len(segments):
            return None
        if any(a < 0 or b < 0 or a > b for a, b in zip(segments[:-1], segments[1:])):
            return None
        if elements != len(segments) - 1 or len(indices) != segments[-1]:
            return None
        if any(i < 0 or i >= sizes[original_dim] for i in indices):
            return None
        elements = len(indices)
    return elements


def _sparse_vector(vector) -> list[int] | None:
    values = getattr(vector, "values", None)
    return None if values is None else [int(v) for v in values]


def _check_op_codes(model, refuse) -> None:
    """VerifyOps with the builtin resolver, over every op code of the table (used or not).
    The resolver's table is the runtime's own; here: a builtin code this schema knows, no
    custom code, a version >= 1 and, for the ops runtime_version.cc lists, one of its versions.
    Every op code must also be used by an op: the compiler's last check then builds an
    interpreter over the bytes, which resolves each of them (so an unused code with a version
    no runtime registers cannot slip through)."""
    used = set()
    for index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(index)
        for position in range(subgraph.OperatorsLength()):
            used.add(subgraph.Operators(position).OpcodeIndex())
    for index in range(0 if model.OperatorCodesIsNone() else model.OperatorCodesLength()):
        op_code = model.OperatorCodes(index)
        code = max(op_code.BuiltinCode(), op_code.DeprecatedBuiltinCode())  # GetBuiltinCode
        if not 0 <= code <= _MAX_BUILTIN_CODE:
            raise refuse(f"Operator id '{code}' is out of range.")
        name, version = _op_name(op_code), op_code.Version()
        if code == schema.BuiltinOperator.CUSTOM:
            raise refuse(f"Unsupported custom op: {name}, version: {version}")
        if version < 1 or (code in _KNOWN_VERSIONS and version not in _KNOWN_VERSIONS[code]):
            raise refuse(f"Unsupported builtin op: {name}, version: {version}")
        if index not in used:
            raise refuse(f"op code {index} ({name} version {version}) is used by no op; drop it "
                         "(an unused code is still resolved by the verifier)")


def _op_name(op_code) -> str:
    code = max(op_code.BuiltinCode(), op_code.DeprecatedBuiltinCode())
    if code == schema.BuiltinOperator.CUSTOM:
        return (op_code.CustomCode() or b"").decode(errors="replace")
    return _OPERATOR_NAMES.get(code, f"builtin#{code}")


def _indices(array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)] if not isinstance(array, int) else []
