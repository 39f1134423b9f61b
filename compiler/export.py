"""Export: a personalized inference-only model from a trainable model and a checkpoint.

The trained weights become constant tensors (every READ_VARIABLE is replaced by its value;
VAR_HANDLE and CALL_ONCE go), training signatures and the variable-init subgraph are
dropped, and only `infer` (subgraph 0) and `load` remain, still sharing the base via IF.
"""

from __future__ import annotations

import json

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from tflite_transfer.compiler import audit, model_io
from tflite_transfer.compiler.errors import InvalidInputError, VerificationError
from tflite_transfer.runtime import checkpoint as checkpoint_file
from tflite_transfer.runtime.contract import METADATA_KEY
from tflite_transfer.runtime.interpreter import read_metadata

KEPT_SIGNATURES = ("infer", "load")
_VARIABLE_OPS = (schema.BuiltinOperator.VAR_HANDLE, schema.BuiltinOperator.READ_VARIABLE,
                 schema.BuiltinOperator.CALL_ONCE)
_NUMPY_TYPES = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT32: np.int32}


def export_inference_model(model_bytes: bytes, state: dict[str, np.ndarray], source: str = "model") -> bytes:
    """The inference-only model with `state` (as `save` returns it) baked in."""
    model = model_io.read_model_bytes(model_bytes, source)
    old_indices = [model_io.signature_subgraph(model, key) for key in KEPT_SIGNATURES]
    if None in old_indices:
        raise InvalidInputError(f"{source}: not a tflite-transfer model (no infer/load signature)")
    for index in old_indices:
        _bake_variables(model, model.subgraphs[index], state, source)
    kept = []
    for index in old_indices:
        kept += [i for i in audit.reachable_subgraphs(model, index) if i not in kept]
    mapping = {old: new for new, old in enumerate(kept)}
    model.subgraphs = [model.subgraphs[i] for i in kept]
    model.signatureDefs = [s for s in model.signatureDefs if s.signatureKey.decode() in KEPT_SIGNATURES]
    for signature in model.signatureDefs:
        signature.subgraphIndex = mapping[signature.subgraphIndex]
    for index, subgraph in enumerate(model.subgraphs):
        for op in subgraph.operators:
            model_io.remap_subgraph_indices(op, mapping)
        new_index = _drop_unused_tensors(subgraph)
        for signature in model.signatureDefs:
            if signature.subgraphIndex == index:
                for tensor_map in [*signature.inputs, *signature.outputs]:
                    tensor_map.tensorIndex = new_index[tensor_map.tensorIndex]
    _update_metadata(model)
    _compact_buffers(model)
    _check_inference_only(model)
    return model_io.append_associated_files(model_io.write_model_bytes(model),
                                            model_io.associated_files(model_bytes))


def _bake_variables(model, subgraph, state: dict[str, np.ndarray], source: str) -> None:
    handles = {}  # resource tensor -> variable name
    kept_ops = []
    for op in subgraph.operators:
        code = model_io.builtin_code(model.operatorCodes[op.opcodeIndex])
        if code == schema.BuiltinOperator.VAR_HANDLE:
            handles[op.outputs[0]] = op.builtinOptions.sharedName.decode()
        elif code == schema.BuiltinOperator.READ_VARIABLE:
            name = handles[op.inputs[0]]
            if name not in state:
                raise InvalidInputError(f"{source}: the checkpoint has no variable '{name}'")
            tensor = subgraph.tensors[op.outputs[0]]
            value = np.asarray(state[name])
            expected = _NUMPY_TYPES.get(tensor.type)
            if expected is None or value.dtype != expected:
                raise InvalidInputError(f"variable '{name}': {value.dtype}, the model reads "
                                        f"{model_io.tensor_type_name(tensor.type)}")
            model.buffers.append(model_io.make_buffer(np.ascontiguousarray(value).tobytes()))
            tensor.buffer = len(model.buffers) - 1
            tensor.shape = np.array(value.shape, np.int32)
            tensor.shapeSignature = None
        if code not in _VARIABLE_OPS:
            kept_ops.append(op)
    subgraph.operators = kept_ops


def _drop_unused_tensors(subgraph) -> dict[int, int]:
    """Removes tensors no op or subgraph input/output uses; returns old -> new index."""
    used = set(int(t) for t in subgraph.inputs) | set(int(t) for t in subgraph.outputs)
    for op in subgraph.operators:
        used.update(int(t) for t in op.inputs if t >= 0)
        used.update(int(t) for t in op.outputs)
        if op.intermediates is not None:
            used.update(int(t) for t in op.intermediates)
    order = sorted(used)
    new_index = {old: new for new, old in enumerate(order)}
    remap = lambda indices: [new_index[int(t)] if t >= 0 else -1 for t in indices]  # noqa: E731
    for op in subgraph.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    subgraph.inputs, subgraph.outputs = remap(subgraph.inputs), remap(subgraph.outputs)
    subgraph.tensors = [subgraph.tensors[i] for i in order]
    return new_index


def _update_metadata(model) -> None:
    for entry in model.metadata:
        if entry.name.decode() == METADATA_KEY:
            metadata = json.loads(model_io.buffer_bytes(model, entry.buffer).decode())
            metadata.update(signatures=list(KEPT_SIGNATURES), exported=True, state={})
            model.buffers[entry.buffer] = model_io.make_buffer(json.dumps(metadata, sort_keys=True).encode())


def _compact_buffers(model) -> None:
    """Keeps only the buffers that kept tensors and metadata use (sentinel 0 stays first)."""
    used = sorted({0} | {t.buffer for s in model.subgraphs for t in s.tensors}
                  | {m.buffer for m in model.metadata or []})
    new_index = {old: new for new, old in enumerate(used)}
    model.buffers = [model.buffers[i] for i in used]
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = new_index[tensor.buffer]
    for entry in model.metadata or []:
        entry.buffer = new_index[entry.buffer]


def _check_inference_only(model) -> None:
    audit.audit_ops(model)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if model_io.operator_name(code) in ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"):
                raise VerificationError(f"exported model still has a {model_io.operator_name(code)} op")


def export_files(model_path: str, checkpoint_path: str, output_path: str) -> bytes:
    """Reads the trainable model and its checkpoint (checked to belong to it), writes the export."""
    from tflite_transfer.compiler.pipeline import write_atomically  # noqa: PLC0415

    model_io.read_model(model_path)  # clear errors for missing / non-tflite files
    with open(model_path, "rb") as handle:
        model_bytes = handle.read()
    metadata = read_metadata(model_bytes, model_path)
    saved = checkpoint_file.read_checkpoint(checkpoint_path)
    expected = {entry.name: (entry.shape, entry.numpy_dtype) for entry in metadata.state}
    checkpoint_file.check_compatible(saved, expected, metadata.fingerprint, checkpoint_path)
    exported = export_inference_model(model_bytes, saved.tensors, model_path)
    write_atomically(output_path, exported)
    return exported
