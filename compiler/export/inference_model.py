"""Export: a personalized inference-only model from a trainable model and a checkpoint, in the
form task frameworks take (MediaPipe Tasks' ImageClassifier, the TFLite Task Library): one
subgraph, `infer` only, standard TFLite Metadata.

  1. the checkpoint is read and checked exactly as `restore_checkpoint` checks it;
  2. the calls are inlined: the base behind `IF(true, image)` and the head's batch dispatch
     (an IF choosing BATCH_MATMUL for batches > 1; with constant weights its FULLY_CONNECTED
     branch is the one XNNPACK takes over) become ops of `infer` itself;
  3. every READ_VARIABLE, now all in `infer`, becomes a constant holding the trained value
     (VAR_HANDLE and CALL_ONCE go);
  4. every other subgraph and signature goes: `load` does not survive, because a single
     subgraph cannot hold two signatures without running both;
  5. metadata: the contract record (no training state) and `TFLITE_METADATA` (input
     normalization, carried over from the base's own metadata when it has some; the labels as
     `labels.txt`, TENSOR_AXIS_LABELS, in the zip appended after the FlatBuffer);
  6. the final bytes pass TFLite's verifier rules and run `infer` once before anything is written.
A base that keeps state in resource variables, or has control flow other than IF, is refused
in one line: its variables are not in the checkpoint, so baking them would silently freeze
values nobody chose.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.checks import audit, verifier_rules
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError, VerificationError
from tflite_transfer.compiler.export import tflite_metadata
from tflite_transfer.compiler.flatbuffer import graph, inline, model_io
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.compiler.passes import op_versions
from tflite_transfer.runtime import checkpoint as checkpoint_file
from tflite_transfer.runtime import contract, inputs
from tflite_transfer.runtime.errors import InvalidInputError as RuntimeInputError
from tflite_transfer.runtime.interpreter import read_metadata

LABELS_FILE = "labels.txt"
_VARIABLE_OPS = (BuiltinOperator.VAR_HANDLE, BuiltinOperator.READ_VARIABLE,
                 BuiltinOperator.ASSIGN_VARIABLE, BuiltinOperator.CALL_ONCE)
_NUMPY_TYPES = {TensorType.FLOAT32: np.float32, TensorType.INT32: np.int32}


def export_inference_model(model_bytes: bytes, state: dict[str, np.ndarray], source: str = "model",
                           image_range: tuple[float, float] | None = None) -> bytes:
    """The single-subgraph inference model with `state` (as `save` returns it) baked in.
    `image_range`: the pixel range a float image input expects, when neither the base's
    metadata nor the compiler knows it (it becomes the input's normalization)."""
    model = model_io.read_model_bytes(model_bytes, source)
    metadata = read_metadata(model_bytes, source)
    refuse_stateful_base(model, metadata, source)
    try:
        state = inputs.state(state, metadata.state)  # the checks restore applies
    except RuntimeInputError as error:
        raise InvalidInputError(f"{source}: {error}") from None
    infer = model_io.signature_subgraph(model, contract.INFER)
    if infer is None or model_io.signature_subgraph(model, contract.TRAIN) is None:
        raise InvalidInputError(f"{source}: not a trainable tflite-transfer model (no infer/train "
                                "signature; an exported model cannot be exported again)")
    base_input = _base_image_input(model, source)
    _inline_calls(model, infer, source)
    _bake_variables(graph.GraphEditor(model), model.subgraphs[infer], state, source)
    graph.select_subgraphs(model, [infer])
    subgraph = model.subgraphs[0]
    graph.prune_ops(model, subgraph, subgraph.outputs)
    graph.prune_tensors(model, 0)
    op_versions.lower_and_declare(model)  # also drops the op codes no op uses any more
    exported = dataclasses.replace(metadata, state=(), model_digest=contract.DIGEST_PLACEHOLDER)
    graph.set_metadata(model, contract.METADATA_KEY, exported.to_json().encode())
    image = _image_input(model, metadata, base_input, image_range)
    graph.set_metadata(model, tflite_metadata.METADATA_NAME, _task_metadata(metadata, image))
    graph.compact_buffers(model)
    files = {LABELS_FILE: _labels_text(metadata).encode()} if (metadata.label.class_ids or metadata.label.one_hot) else {}
    data = contract.stamp_digest(model_io.append_associated_files(model_io.write_model_bytes(model), files))
    check_exported_model(data, "exported model")
    return data


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
    """Every READ_VARIABLE of the (inlined) subgraph becomes a constant holding the checkpoint's
    value; VAR_HANDLE and CALL_ONCE (the head's variable init) go. A variable the training
    state does not hold, or an ASSIGN_VARIABLE, is the base's own state: refused."""
    model = editor.model
    handles = {}  # resource tensor -> variable name
    kept_ops = []
    for op in subgraph.operators:
        code = model_io.builtin_code(model.operatorCodes[op.opcodeIndex])
        if code == BuiltinOperator.VAR_HANDLE:
            handles[op.outputs[0]] = op.builtinOptions.sharedName.decode(errors="replace")
        elif code == BuiltinOperator.READ_VARIABLE:
            name = handles.get(op.inputs[0])
            if name not in state:
                raise UnsupportedModelError(_stateful_base(source, "READ_VARIABLE", name))
            tensor = subgraph.tensors[op.outputs[0]]
            value = np.asarray(state[name])
            expected = _NUMPY_TYPES.get(tensor.type)
            if expected is None or value.dtype != expected:
                raise InvalidInputError(f"variable '{name}': {value.dtype}, the model reads "
                                        f"{model_io.tensor_type_name(tensor.type)}")
            tensor.buffer = editor.buffer(np.ascontiguousarray(value).tobytes())
            tensor.shape = np.array(value.shape, np.int32)
            tensor.shapeSignature = None
        elif code == BuiltinOperator.ASSIGN_VARIABLE:
            raise UnsupportedModelError(_stateful_base(source, "ASSIGN_VARIABLE", handles.get(op.inputs[0])))
        if code not in _VARIABLE_OPS:
            kept_ops.append(op)
    subgraph.operators = kept_ops
    for position, op in enumerate(kept_ops):
        if model_io.called_subgraphs(op):
            raise UnsupportedModelError(f"{source}: {_where(model, op, position)} calls another subgraph; "
                                        "a single-subgraph export can inline IF only (a base with "
                                        "loops or other control flow cannot be exported this way)")


def _stateful_base(source: str, op: str, variable: str | None) -> str:
    return (f"{source}: infer's {op} of variable '{variable}' is the base's own state (resource "
            "variables), not the head's: export bakes only the head's trained weights, so it cannot "
            "export a model over a stateful base")


def _inline_calls(model, index: int, source: str) -> None:
    """Inlines every IF of `infer` until none is left: constant conditions take their branch;
    the head's batch dispatch takes its FULLY_CONNECTED branch. Anything else is refused."""
    subgraph = model.subgraphs[index]
    for _ in range(10_000):  # each round removes one IF; IFs that call each other are refused
        position = next((p for p, op in enumerate(subgraph.operators)
                         if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "IF"), None)
        if position is None:
            return
        op = subgraph.operators[position]
        inline.inline_call(model, index, position, _branch(model, subgraph, op, position, source))
    raise UnsupportedModelError(f"{source}: infer's IF ops call each other without end")


def _branch(model, subgraph, op, position: int, source: str) -> int:
    options = op.builtinOptions
    condition = subgraph.tensors[op.inputs[0]]
    data = model_io.buffer_data(model, condition.buffer)
    if data:  # a constant condition: the base call (fuse.py) is IF(true, ...)
        return options.thenSubgraphIndex if data[0] else options.elseSubgraphIndex
    # The head's dispatch (training_graph._dense): BATCH_MATMUL for batches > 1, else
    # FULLY_CONNECTED, each reading the kernel from the variable handle it is passed.
    branches = [_op_names(model, b) - {"READ_VARIABLE"} for b in (options.thenSubgraphIndex, options.elseSubgraphIndex)]
    fully_connected = [b for b, names in zip((options.thenSubgraphIndex, options.elseSubgraphIndex), branches)
                       if names == {"FULLY_CONNECTED"}]
    if len(fully_connected) != 1 or not any("BATCH_MATMUL" in names for names in branches):
        raise UnsupportedModelError(f"{source}: {_where(model, op, position)} chooses a branch at run "
                                    "time; a single-subgraph export cannot inline it")
    return fully_connected[0]


def _op_names(model, index: int) -> set[str]:
    return {model_io.operator_name(model.operatorCodes[o.opcodeIndex]) for o in model.subgraphs[index].operators}


def _where(model, op, position: int) -> str:
    return f"infer's op {position} ({model_io.operator_name(model.operatorCodes[op.opcodeIndex])})"


# TFLite Metadata.
def _base_image_input(model, source: str) -> tflite_metadata.ImageInput | None:
    """The base's own TFLite Metadata about its image input (fuse keeps the base's entries)."""
    data = graph.get_metadata(model, tflite_metadata.METADATA_NAME)
    if data is None:
        return None
    try:
        return tflite_metadata.read_image_input(data)
    except ValueError as error:
        raise InvalidInputError(f"{source}: the base's {tflite_metadata.METADATA_NAME} entry is "
                                f"unreadable ({error}); compile from a base with intact metadata") from None


def _image_input(model, metadata: contract.ModelMetadata, base: tflite_metadata.ImageInput | None,
                 image_range: tuple[float, float] | None) -> tflite_metadata.ImageInput:
    """Normalization of a float input: the base's own, else --image_range, else the pixel
    range the compiler recorded. Quantized inputs take raw pixels: no normalization."""
    subgraph = model.subgraphs[0]
    tensor = subgraph.tensors[subgraph.inputs[0]]
    shape = model_io.tensor_shape(tensor)
    name = metadata.tensor_names.input
    if metadata.input is not None and metadata.input.kind != contract.IMAGE_KIND:
        value_range = metadata.input.range
        return tflite_metadata.ImageInput(
            name, f"{model_io.tensor_type_name(tensor.type)} {list(shape[1:])} values"
            + (f" in [{value_range[0]:g}, {value_range[1]:g}]" if value_range else ""),
            value_range=value_range, color_space=None)
    description = f"{'x'.join(map(str, shape[1:3]))} image, {model_io.tensor_type_name(tensor.type)}"
    color_space = base.color_space if base is not None else tflite_metadata.RGB
    if tensor.type != TensorType.FLOAT32:
        return tflite_metadata.ImageInput(name, f"{description} pixels 0-255", None, None,
                                          (0.0, 255.0), color_space)
    if base is not None and base.mean is not None and image_range is None:
        mean, std = base.mean, base.std
    else:
        pixel_range = image_range or metadata.input_range
        if pixel_range is None:
            return tflite_metadata.ImageInput(name, f"{description}; value range unknown "
                                              "(export with --image_range)", color_space=color_space)
        mean_value, std_value = tflite_metadata.normalization_for_range(*pixel_range)
        mean, std = (mean_value,), (std_value,)
    low, high = (0.0 - mean[0]) / std[0], (255.0 - mean[0]) / std[0]
    return tflite_metadata.ImageInput(name, f"{description}: (pixel - mean) / std of "
                                      "pixels 0-255", tuple(mean), tuple(std), (low, high), color_space)


def _task_metadata(metadata: contract.ModelMetadata, image: tflite_metadata.ImageInput) -> bytes:
    classes = metadata.label.class_ids or metadata.label.one_hot
    base = metadata.base.get("description", "a base model")
    head = metadata.head.get("description", "a trained head")
    output = tflite_metadata.Output(
        metadata.output,
        (f"probability of each of the {metadata.num_outputs} classes (labels.txt)" if classes
         else f"{metadata.num_outputs} predicted values"),
        (0.0, 1.0) if classes else None, LABELS_FILE if classes else None)
    description = (f"Personalized on device with tflite-transfer: base {base}; head {head} "
                   f"({metadata.loss}); weights from a training checkpoint.")
    return tflite_metadata.build("tflite-transfer personalized " + ("classifier" if classes else "model"),
                                 description, image, output)


def _labels_text(metadata: contract.ModelMetadata) -> str:
    """The model's class names; classes without names are named by their index."""
    names = metadata.labels or tuple(str(i) for i in range(metadata.num_outputs))
    return "".join(f"{name}\n" for name in names)


# The checks on the final bytes.
def check_exported_model(data: bytes, source: str) -> None:
    """Builtin ops only, one subgraph with `infer` alone and no variables or calls, TFLite's
    verifier rules, and `infer` run once by the interpreter the runtime uses."""
    model = model_io.read_model_bytes(data, source)
    audit.audit_ops(model)
    signatures = [s.signatureKey.decode() for s in model.signatureDefs or []]
    if len(model.subgraphs) != 1 or signatures != [contract.INFER]:
        raise VerificationError(f"{source} has {len(model.subgraphs)} subgraphs and signatures "
                                f"{signatures}, expected one subgraph with infer alone")
    for op in model.subgraphs[0].operators:
        code = model_io.builtin_code(model.operatorCodes[op.opcodeIndex])
        if code in _VARIABLE_OPS or model_io.called_subgraphs(op):
            raise VerificationError(f"{source} still has a {model_io.operator_name(model.operatorCodes[op.opcodeIndex])} op")
    verifier_rules.check_verifier_rules(data, source)
    from tflite_transfer.runtime.inference_model import InferenceModel  # noqa: PLC0415 (cycle-free, lazy)

    opened = InferenceModel.open(data)
    images = np.zeros((1, *opened.image_shape), opened.image_dtype)
    outputs = opened.predict(images)
    if outputs.shape[1:] != (opened.metadata.num_outputs,) or not np.isfinite(outputs).all():
        raise VerificationError(f"{source}: infer returned {outputs.dtype} {list(outputs.shape)} "
                                f"{'with NaN/Inf' if not np.isfinite(outputs).all() else ''}")


def export_files(model_path: str, checkpoint_path: str, output_path: str,
                 image_range: tuple[float, float] | None = None) -> bytes:
    """Reads the trainable model and its checkpoint (checked as restore_checkpoint checks it),
    writes the export."""
    model_bytes = user_files.read_file_bytes(model_path, "--model", "a .tflite file")
    source = user_files.printable(model_path)
    model_io.read_model_bytes(model_bytes, source)  # clear errors for non-tflite files
    metadata = read_metadata(model_bytes, source)
    user_files.check_regular_file(checkpoint_path, "--checkpoint", "a checkpoint file")
    state = checkpoint_file.read_model_state(checkpoint_path, metadata)
    exported = export_inference_model(model_bytes, state, source, image_range)
    user_files.write_atomically(output_path, exported)
    return exported
