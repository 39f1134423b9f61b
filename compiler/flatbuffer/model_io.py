"""The only place that reads and writes TFLite FlatBuffers.

Every pass works on the schema's object API (`ModelT`) from the tensorflow package; this
module adds what the object API gets wrong or leaves out: clear errors for bad files, the
two op-code fields, subgraph indices hidden in op options, and 16-byte aligned buffers.
"""

from __future__ import annotations

import io
import zipfile
import zlib

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError

ModelT = schema.ModelT
BuiltinOperator = schema.BuiltinOperator
TensorType = schema.TensorType
_FILE_IDENTIFIER = b"TFL3"
_OPERATOR_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items()
                   if not name.startswith("_")}
_TENSOR_TYPE_NAMES = {value: name.lower() for name, value in vars(schema.TensorType).items()
                      if not name.startswith("_")}
# The Python FlatBuffers builder uses signed 32-bit offsets.
MAX_FLATBUFFER_BYTES = 2**31 - 1
BUFFER_ALIGNMENT = 16  # the schema's force_align for Buffer.data


def read_model_bytes(data: bytes, source: str = "<bytes>") -> ModelT:
    """Parses a .tflite FlatBuffer, with a clear error for anything that is not one."""
    if len(data) < 8 or data[4:8] != _FILE_IDENTIFIER:
        raise InvalidInputError(
            f"{source}: not a TFLite model (expected the 'TFL3' file identifier at byte 4)")
    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    except Exception as error:  # flatbuffers raises struct/index errors on truncation
        raise InvalidInputError(
            f"{source}: truncated or corrupt TFLite file ({len(data)} bytes; its FlatBuffer does "
            f"not parse: {type(error).__module__}.{type(error).__name__}); use the original file"
        ) from None
    if not model.subgraphs:
        raise InvalidInputError(f"{source}: TFLite model has no subgraph")
    for buffer in model.buffers or []:
        if buffer.offset > 1:
            raise UnsupportedModelError(
                f"{source}: buffers stored outside the FlatBuffer (models over 2 GB) are not "
                "supported; the Python FlatBuffers builder cannot write such models")
    _check_references(model, source)
    return model


def read_model(path: str) -> ModelT:
    return read_model_bytes(user_files.read_file_bytes(path, "model file", "a .tflite file"),
                            user_files.printable(path))


def _check_references(model: ModelT, source: str) -> None:
    """Structure checks that catch a damaged-but-parsable file (a flipped bit, a truncation
    the FlatBuffer reader did not notice) before a pass or the interpreter trips over it:
    every index in range, every name UTF-8. Absent vectors and names become empty ones (the
    same thing in a FlatBuffer), so passes can iterate and decode them."""
    corrupt = f"{source}: corrupt TFLite file:"
    buffers, op_codes = len(model.buffers or []), len(model.operatorCodes or [])
    subgraphs = len(model.subgraphs)
    for index, subgraph in enumerate(model.subgraphs):
        if subgraph is None:
            raise InvalidInputError(f"{corrupt} subgraph {index} is missing")
        subgraph.tensors = list(subgraph.tensors) if subgraph.tensors is not None else []
        subgraph.operators = list(subgraph.operators) if subgraph.operators is not None else []
        count = len(subgraph.tensors)

        def check_indices(indices, what: str, optional: bool, count=count, index=index) -> list[int]:
            indices = [] if indices is None else [int(t) for t in indices]
            for tensor in indices:
                if tensor >= count or tensor < (-1 if optional else 0):
                    raise InvalidInputError(f"{corrupt} {what} of subgraph {index} refers to "
                                            f"tensor {tensor}, which does not exist ({count} tensors)")
            return indices

        subgraph.inputs = check_indices(subgraph.inputs, "an input", False)
        subgraph.outputs = check_indices(subgraph.outputs, "an output", False)
        for position, op in enumerate(subgraph.operators):
            if op is None:
                raise InvalidInputError(f"{corrupt} op {position} of subgraph {index} is missing")
            if not 0 <= op.opcodeIndex < op_codes:
                raise InvalidInputError(f"{corrupt} op {position} of subgraph {index} uses missing op code {op.opcodeIndex}")
            op.inputs = check_indices(op.inputs, f"op {position}", True)
            op.outputs = check_indices(op.outputs, f"op {position}", True)
            if op.intermediates is not None:
                op.intermediates = check_indices(op.intermediates, f"op {position}", True)
            for called in called_subgraphs(op):
                if not 0 <= called < subgraphs:
                    raise InvalidInputError(f"{corrupt} op {position} of subgraph {index} calls "
                                            f"missing subgraph {called}")
        for position, tensor in enumerate(subgraph.tensors):
            if tensor is None:
                raise InvalidInputError(f"{corrupt} tensor {position} of subgraph {index} is missing")
            if not 0 <= tensor.buffer < buffers:
                raise InvalidInputError(f"{corrupt} tensor {position} of subgraph {index} refers to missing buffer {tensor.buffer}")
            _check_name(tensor.name, f"{corrupt} tensor {position} of subgraph {index}")
            tensor.name = b"" if tensor.name is None else tensor.name
            if tensor.shape is None:
                tensor.shape = np.zeros(0, np.int32)
            if tensor.type not in _TENSOR_TYPE_NAMES:
                raise InvalidInputError(f"{corrupt} tensor {position} of subgraph {index} has unknown type {tensor.type}")
            _check_buffer_size(model, tensor, f"{corrupt} tensor '{tensor_name(tensor)}'")
            _check_shape_and_quantization(tensor, f"{corrupt} tensor '{tensor_name(tensor)}'")
    for op_code in model.operatorCodes or []:
        if op_code is None:
            raise InvalidInputError(f"{corrupt} an op code is missing")
        if builtin_code(op_code) not in _OPERATOR_NAMES:
            raise InvalidInputError(f"{corrupt} op code {builtin_code(op_code)} is no TFLite builtin "
                                    "this TensorFlow knows")
    for signature in model.signatureDefs or []:
        where = f"{corrupt} a signature"
        _check_name(signature.signatureKey, where)
        signature.signatureKey = b"" if signature.signatureKey is None else signature.signatureKey
        if not 0 <= signature.subgraphIndex < subgraphs:
            raise InvalidInputError(f"{where} refers to missing subgraph {signature.subgraphIndex}")
        count = len(model.subgraphs[signature.subgraphIndex].tensors)
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            _check_name(tensor_map.name, where)
            tensor_map.name = b"" if tensor_map.name is None else tensor_map.name
            if not 0 <= tensor_map.tensorIndex < count:
                raise InvalidInputError(f"{where} refers to missing tensor {tensor_map.tensorIndex}")
    for entry in model.metadata or []:
        _check_name(entry.name, f"{corrupt} a metadata entry")
        entry.name = b"" if entry.name is None else entry.name
        if not 0 <= entry.buffer < buffers:
            raise InvalidInputError(f"{corrupt} metadata entry refers to missing buffer {entry.buffer}")


# Bytes per element of the types whose constant buffers hold exactly shape-product elements.
_ELEMENT_BYTES = {TensorType.FLOAT32: 4, TensorType.FLOAT16: 2, TensorType.INT32: 4, TensorType.UINT8: 1,
                  TensorType.INT64: 8, TensorType.BOOL: 1, TensorType.INT16: 2, TensorType.INT8: 1,
                  TensorType.FLOAT64: 8, TensorType.UINT32: 4}


def _check_buffer_size(model: ModelT, tensor: schema.TensorT, where: str) -> None:
    """A constant's bytes must match its shape: a flipped bit in a shape or a size otherwise
    reaches the interpreter ("required_bytes <= bytes was not true", element-count overflow)."""
    shape = [] if tensor.shape is None else [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"{where} has a negative dimension in its shape {shape}")
    data = model.buffers[tensor.buffer].data if tensor.buffer else None
    if data is None or not len(data) or tensor.sparsity is not None or tensor.type not in _ELEMENT_BYTES:
        return
    needed = int(np.prod(shape, dtype=object)) * _ELEMENT_BYTES[tensor.type]
    if needed != len(data):
        raise InvalidInputError(f"{where} {shape} {tensor_type_name(tensor.type)} needs {needed} bytes, "
                                f"its buffer holds {len(data)}")


# No tensor of an on-device model comes near this; a flipped bit in a dimension does (the
# compiler would try to allocate it: 72 GiB for one flip measured).
MAX_TENSOR_ELEMENTS = 2**30
_ZERO_POINT_RANGES = {TensorType.INT8: (-128, 127), TensorType.UINT8: (0, 255), TensorType.INT16: (-32768, 32767)}


def _check_shape_and_quantization(tensor: schema.TensorT, where: str) -> None:
    """Shapes that agree with their signature and stay allocatable; quantization parameters the
    kernels accept (a zero point outside int8 crashed LiteRT with SIGSEGV; a per-channel axis
    outside the shape is refused by it with a raw ValueError)."""
    shape = [] if tensor.shape is None else [int(d) for d in tensor.shape]
    signature = None if tensor.shapeSignature is None else [int(d) for d in tensor.shapeSignature]
    if signature is not None and len(signature) and (
            len(signature) != len(shape) or any(s not in (-1, d) for s, d in zip(signature, shape))):
        raise InvalidInputError(f"{where} has shape {shape} but shape signature {signature}")
    if int(np.prod(shape, dtype=object)) > MAX_TENSOR_ELEMENTS:
        raise InvalidInputError(f"{where} has shape {shape}: more than {MAX_TENSOR_ELEMENTS} elements")
    quantization = tensor.quantization
    if quantization is None or quantization.scale is None or not len(quantization.scale):
        return
    scales = np.asarray(quantization.scale, np.float64)
    zero_points = np.asarray(quantization.zeroPoint if quantization.zeroPoint is not None else [], np.int64)
    if not (np.isfinite(scales).all() and (scales >= 0).all()):
        raise InvalidInputError(f"{where} has quantization scales that are not finite and >= 0")
    if len(zero_points) != len(scales):
        raise InvalidInputError(f"{where} has {len(scales)} quantization scales but {len(zero_points)} zero points")
    low, high = _ZERO_POINT_RANGES.get(tensor.type, (-2**31, 2**31 - 1))
    if len(zero_points) and (zero_points.min() < low or zero_points.max() > high):
        raise InvalidInputError(f"{where} has zero points outside [{low}, {high}] for "
                                f"{tensor_type_name(tensor.type)}")
    if len(scales) > 1:
        axis = int(quantization.quantizedDimension)
        if not 0 <= axis < len(shape) or shape[axis] != len(scales):
            raise InvalidInputError(f"{where} has {len(scales)} per-channel scales along axis {axis} of "
                                    f"shape {shape}")


def _check_name(name, where: str) -> None:
    if isinstance(name, (bytes, bytearray)):
        try:
            bytes(name).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{where} has a name that is not UTF-8 text") from None


def builtin_code(op_code: schema.OperatorCodeT) -> int:
    """The real builtin code: ops >= 127 keep 127 in the deprecated field and the value in
    `builtinCode`; files older than TF 2.3 have only the deprecated field (builtinCode 0)."""
    return max(op_code.builtinCode, op_code.deprecatedBuiltinCode)


def operator_name(op_code: schema.OperatorCodeT) -> str:
    code = builtin_code(op_code)
    if code == BuiltinOperator.CUSTOM:
        return (op_code.customCode or b"?").decode(errors="replace")
    return _OPERATOR_NAMES.get(code, f"builtin#{code}")


def is_builtin(op_code: schema.OperatorCodeT) -> bool:
    return builtin_code(op_code) != BuiltinOperator.CUSTOM and not op_code.customCode


def make_op_code(code: int, version: int) -> schema.OperatorCodeT:
    op_code = schema.OperatorCodeT()
    op_code.builtinCode = code
    op_code.deprecatedBuiltinCode = min(code, BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    op_code.version = version
    return op_code


def normalized_op_code(op_code: schema.OperatorCodeT) -> schema.OperatorCodeT:
    """A copy with both code fields set the way current and old runtimes both read them."""
    normalized = make_op_code(builtin_code(op_code), op_code.version or 1)
    normalized.customCode = op_code.customCode
    return normalized


def op_code_key(op_code: schema.OperatorCodeT) -> tuple:
    return builtin_code(op_code), op_code.customCode or b"", op_code.version or 1


def tensor_name(tensor: schema.TensorT) -> str:
    return tensor.name.decode(errors="replace") if isinstance(tensor.name, bytes) else str(tensor.name)


def tensor_type_name(type_code: int) -> str:
    return _TENSOR_TYPE_NAMES.get(type_code, f"type#{type_code}")


def tensor_shape(tensor: schema.TensorT) -> list[int]:
    """The shape with -1 for dynamic dimensions (shape_signature when present)."""
    if tensor.shapeSignature is not None and len(tensor.shapeSignature):
        return [int(d) for d in tensor.shapeSignature]
    return [int(d) for d in (tensor.shape if tensor.shape is not None else [])]


def _subgraph_fields(op: schema.OperatorT):
    """(options, field, value) for every subgraph index hidden in an op's options (IF, WHILE,
    CALL_ONCE, CALL, StableHLO ops): every such field has 'subgraph' in its name."""
    for options in (op.builtinOptions, getattr(op, "builtinOptions2", None)):
        if options is None:
            continue
        for field, value in vars(options).items():
            if "subgraph" in field.lower() and value is not None:
                yield options, field, value


def called_subgraphs(op: schema.OperatorT) -> list[int]:
    """The subgraphs an op can run."""
    called = []
    for _, _, value in _subgraph_fields(op):
        called.extend([int(value)] if np.ndim(value) == 0 else [int(v) for v in value])
    return called


def remap_subgraph_indices(op: schema.OperatorT, mapping: dict[int, int]) -> None:
    """Rewrites every subgraph index in an op's options. Missing one gives e.g.
    `call_once.cc ... init_subgraph_index` errors when subgraphs move."""
    for options, field, value in list(_subgraph_fields(op)):
        if np.ndim(value) == 0:
            setattr(options, field, mapping[int(value)])
        else:
            setattr(options, field, [mapping[int(v)] for v in value])


class _AlignedBufferT(schema.BufferT):
    """A BufferT whose data vector is 16-byte aligned in the file, as the schema asks
    (`force_align: 16`); the generated Pack aligns to 1 byte, which ARM devices may reject."""

    def Pack(self, builder: flatbuffers.Builder):
        # A present but zero-length data vector is kept: it is what makes an empty constant (a
        # RESHAPE target shape [0]) a constant for TFLite's verifier; no vector means "computed".
        data_offset = None
        if self.data is not None:
            raw = bytes(np.asarray(self.data, dtype=np.uint8).data)
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data_offset = builder.EndVector()
        schema.BufferStart(builder)
        if data_offset is not None:
            schema.BufferAddData(builder, data_offset)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def make_buffer(data: bytes | np.ndarray | None) -> schema.BufferT:
    """A buffer holding `data`; None gives no data vector (a tensor computed at run time), b""
    a present, zero-length one (an empty constant)."""
    buffer = _AlignedBufferT()
    if data is not None:
        buffer.data = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    return buffer


def write_model_bytes(model: ModelT) -> bytes:
    """Serializes a model with every buffer 16-byte aligned."""
    total = sum(len(b.data) for b in model.buffers if b.data is not None)
    if total > MAX_FLATBUFFER_BYTES - (64 << 20):
        raise UnsupportedModelError(
            f"the fused model's weights take {total / 2**30:.2f} GiB; the Python FlatBuffers "
            "builder cannot write a file over 2 GB")
    original = model.buffers
    model.buffers = [b if isinstance(b, _AlignedBufferT) else _aligned_copy(b) for b in original]
    try:
        builder = flatbuffers.Builder(max(1024, total + (1 << 20)))
        builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
        return bytes(builder.Output())
    finally:
        model.buffers = original


def _aligned_copy(buffer: schema.BufferT) -> _AlignedBufferT:
    aligned = _AlignedBufferT()
    aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    return aligned


def buffer_bytes(model: ModelT, index: int) -> bytes:
    data = model.buffers[index].data
    return b"" if data is None else bytes(np.asarray(data, dtype=np.uint8).data)


def buffer_data(model: ModelT, index: int) -> bytes | None:
    """The bytes of a buffer, or None when it has no data vector (buffer 0, the sentinel, never
    has one). b"" and None differ: TFLite's verifier takes a tensor on a buffer with a present,
    zero-length vector for an (empty) constant and one without a vector for a computed tensor."""
    if index == 0:
        return None
    data = model.buffers[index].data
    return None if data is None else bytes(np.asarray(data, dtype=np.uint8).data)


def is_constant(model: ModelT, tensor: schema.TensorT) -> bool:
    """A constant as TFLite's verifier (verifier.cc IsConstantTensor) defines it: a buffer other
    than 0 that has a data vector, even an empty one."""
    return buffer_data(model, tensor.buffer) is not None


def signature_subgraph(model: ModelT, key: str) -> int | None:
    for signature in model.signatureDefs or []:
        if signature.signatureKey.decode() == key:
            return signature.subgraphIndex
    return None


def associated_files(data: bytes, source: str = "base") -> dict[str, bytes]:
    """Files that tflite-support metadata appends to a model as a zip after the FlatBuffer
    (e.g. labels.txt). A FlatBuffer rewrite drops them unless they are appended again.

    No zip found: none. A zip found whose files cannot be read (damaged, encrypted, an
    unknown compression) is refused rather than silently dropped."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, IndexError):
        return {}
    with archive:
        try:
            return {name: archive.read(name) for name in archive.namelist()}
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, ValueError,
                EOFError, OSError, KeyError) as error:
            raise InvalidInputError(f"{source}: the zip of associated files (labels...) appended to "
                                    f"the model is damaged ({type(error).__name__}); "
                                    "re-export the base with its metadata") from None


def append_associated_files(data: bytes, files: dict[str, bytes]) -> bytes:
    """`data` with `files` appended as a zip, the way tflite-support packs them."""
    if not files:
        return data
    buffer = io.BytesIO()
    buffer.write(data)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()
