"""Export: a personalized inference-only model from a trainable model and a checkpoint.

The trained weights become constant tensors (every READ_VARIABLE is replaced by its value;
VAR_HANDLE and CALL_ONCE go), training signatures and the variable-init subgraph are
dropped, and only `infer` (subgraph 0) and `load` remain, still sharing the base via IF.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.compiler.errors import InvalidInputError, VerificationError
from tflite_transfer.runtime import checkpoint as checkpoint_file
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.interpreter import read_metadata

KEPT_SIGNATURES = (contract.INFER, contract.LOAD)
_VARIABLE_OPS = (BuiltinOperator.VAR_HANDLE, BuiltinOperator.READ_VARIABLE,
                 BuiltinOperator.CALL_ONCE)
_NUMPY_TYPES = {TensorType.FLOAT32: np.float32, TensorType.INT32: np.int32}


def export_inference_model(model_bytes: bytes, state: dict[str, np.ndarray], source: str = "model") -> bytes:
    """The inference-only model with `state` (as `save` returns it) baked in."""
    model = model_io.read_model_bytes(model_bytes, source)
    metadata = read_metadata(model_bytes, source)
    refuse_stateful_base(model, metadata, source)
    old_indices = [model_io.signature_subgraph(model, key) for key in KEPT_SIGNATURES]
    if None in old_indices:
        raise InvalidInputError(f"{source}: not a tflite-transfer model (no infer/load signature)")
    editor = graph.GraphEditor(model)
    for index in old_indices:
        _bake_variables(editor, model.subgraphs[index], state, source)
    kept = []
    for index in old_indices:
        kept += [i for i in audit.reachable_subgraphs(model, index) if i not in kept]
    graph.select_subgraphs(model, kept)
    for index in range(len(model.subgraphs)):
        graph.prune_tensors(model, index)
    # No training state any more; the digest is stamped again over the new bytes.
    exported = dataclasses.replace(metadata, state=(), model_digest=contract.DIGEST_PLACEHOLDER)
    graph.set_metadata(model, contract.METADATA_KEY, exported.to_json().encode())
    graph.compact_buffers(model)
    _check_inference_only(model)
    return contract.stamp_digest(model_io.append_associated_files(
        model_io.write_model_bytes(model), model_io.associated_files(model_bytes)))


def refuse_stateful_base(model, metadata: contract.ModelMetadata, source: str) -> None:
    """Export bakes every READ_VARIABLE as a constant: a base that keeps state between calls
    (a streaming base's ring buffer, role contract.BASE_STATE) would be frozen at one moment of
    its stream. Refused by the metadata's roles and, for models that predate them, by any
    variable assignment that `load` runs outside an init subgraph (CALL_ONCE)."""
    names = [entry.name for entry in metadata.entries_with_role(contract.BASE_STATE)]
    seen, stack = set(), [model_io.signature_subgraph(model, contract.LOAD)]
    while stack and not names:
        index = stack.pop()
        if index is None or index in seen:
            continue
        seen.add(index)
        for op in model.subgraphs[index].operators or []:
            code = model_io.builtin_code(model.operatorCodes[op.opcodeIndex])
            if code == BuiltinOperator.ASSIGN_VARIABLE and f"variables written in subgraph {index}" not in names:
                names.append(f"variables written in subgraph {index}")
            if code != BuiltinOperator.CALL_ONCE:
                stack.extend(model_io.called_subgraphs(op))
    if names:
        raise InvalidInputError(
            f"{source}: the base keeps state between calls ({', '.join(names[:3])}); an inference-only "
            "model would freeze it, so export refuses it: ship the trainable model instead")


def _bake_variables(editor: graph.GraphEditor, subgraph, state: dict[str, np.ndarray], source: str) -> None:
    model = editor.model
    handles = {}  # resource tensor -> variable name
    kept_ops = []
    for op in subgraph.operators:
        code = model_io.builtin_code(model.operatorCodes[op.opcodeIndex])
        if code == BuiltinOperator.VAR_HANDLE:
            handles[op.outputs[0]] = op.builtinOptions.sharedName.decode()
        elif code == BuiltinOperator.READ_VARIABLE:
            name = handles[op.inputs[0]]
            if name not in state:
                raise InvalidInputError(f"{source}: the checkpoint has no variable '{name}'")
            tensor = subgraph.tensors[op.outputs[0]]
            value = np.asarray(state[name])
            expected = _NUMPY_TYPES.get(tensor.type)
            if expected is None or value.dtype != expected:
                raise InvalidInputError(f"variable '{name}': {value.dtype}, the model reads "
                                        f"{model_io.tensor_type_name(tensor.type)}")
            tensor.buffer = editor.buffer(np.ascontiguousarray(value).tobytes())
            tensor.shape = np.array(value.shape, np.int32)
            tensor.shapeSignature = None
        if code not in _VARIABLE_OPS:
            kept_ops.append(op)
    subgraph.operators = kept_ops


def _check_inference_only(model) -> None:
    audit.audit_ops(model)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if model_io.operator_name(code) in ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"):
                raise VerificationError(f"exported model still has a {model_io.operator_name(code)} op")


def export_files(model_path: str, checkpoint_path: str, output_path: str) -> bytes:
    """Reads the trainable model and its checkpoint (checked to belong to it), writes the export."""
    model_bytes = user_files.read_file_bytes(model_path, "--model", "a .tflite file")
    source = user_files.printable(model_path)
    model_io.read_model_bytes(model_bytes, source)  # clear errors for non-tflite files
    metadata = read_metadata(model_bytes, source)
    user_files.check_regular_file(checkpoint_path, "--checkpoint", "a checkpoint file")
    saved = checkpoint_file.read_checkpoint(checkpoint_path)
    expected = {entry.name: (entry.shape, entry.numpy_dtype) for entry in metadata.state}
    checkpoint_file.check_compatible(saved, expected, metadata.fingerprint, checkpoint_path)
    exported = export_inference_model(model_bytes, saved.tensors, source)
    user_files.write_atomically(output_path, exported)
    return exported
