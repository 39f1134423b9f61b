"""The only place that reads and writes TFLite FlatBuffers.

Every pass works on the schema's object API (`ModelT`) from the tensorflow package; this
module adds what the object API gets wrong or leaves out: clear errors for bad files, the
two op-code fields, subgraph indices hidden in op options, and 16-byte aligned buffers. The
structure checks every model read here passes are runtime/model_structure.py's (numpy only:
the runtime runs them too, on models opened without their digest).
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
from tflite_transfer.runtime import model_structure

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
    # Every index in range, names UTF-8, shapes, constants, quantization and op options.
    model_structure.check_structure(data, source)
    for buffer in model.buffers or []:
        if buffer.offset > 1:
            raise UnsupportedModelError(
                f"{source}: buffers stored outside the FlatBuffer (models over 2 GB) are not "
                "supported; the Python FlatBuffers builder cannot write such models")
    _fill_absent_vectors(model)
    return model


def read_model(path: str) -> ModelT:
    return read_model_bytes(user_files.read_file_bytes(path, "model file", "a .tflite file"),
                            user_files.printable(path))


def _fill_absent_vectors(model: ModelT) -> None:
    """Absent vectors and names become empty ones (the same thing in a FlatBuffer), so passes
    can iterate and decode them."""
    for subgraph in model.subgraphs:
        subgraph.tensors = list(subgraph.tensors) if subgraph.tensors is not None else []
        subgraph.operators = list(subgraph.operators) if subgraph.operators is not None else []
        subgraph.inputs = [] if subgraph.inputs is None else [int(t) for t in subgraph.inputs]
        subgraph.outputs = [] if subgraph.outputs is None else [int(t) for t in subgraph.outputs]
        for op in subgraph.operators:
            op.inputs = [] if op.inputs is None else [int(t) for t in op.inputs]
            op.outputs = [] if op.outputs is None else [int(t) for t in op.outputs]
            if op.intermediates is not None:
                op.intermediates = [int(t) for t in op.intermediates]
        for tensor in subgraph.tensors:
            tensor.name = b"" if tensor.name is None else tensor.name
            if tensor.shape is None:
                tensor.shape = np.zeros(0, np.int32)
    for signature in model.signatureDefs or []:
        signature.signatureKey = b"" if signature.signatureKey is None else signature.signatureKey
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.name = b"" if tensor_map.name is None else tensor_map.name
    for entry in model.metadata or []:
        entry.name = b"" if entry.name is None else entry.name


MAX_TENSOR_ELEMENTS = model_structure.MAX_TENSOR_ELEMENTS


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
    return model_structure.called_subgraphs(op.builtinOptions, getattr(op, "builtinOptions2", None))


def reachable_subgraphs(model: ModelT, starts, follows=lambda op: True) -> list[int]:
    """The subgraphs in `starts` and every subgraph their control-flow ops (IF, WHILE,
    CALL_ONCE...) can call, through the ops `follows` accepts; in the order first reached."""
    seen, stack = [], list(starts)
    while stack:
        index = stack.pop()
        if index in seen:
            continue
        seen.append(index)
        for op in model.subgraphs[index].operators or []:
            if follows(op):
                stack.extend(called_subgraphs(op))
    return seen


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
