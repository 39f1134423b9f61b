"""Fuses a prepared base and a converted training head into one model.

Layout of the fused model (subgraph index: what it is):
  0 infer         input -> [scaling] -> IF(base) -> head forward -> output  (plain invoke() runs it)
  1 load          input -> [scaling] -> IF(base) -> bottleneck
  2 train         the head's train step on cached bottlenecks
  3 train_images  input -> [scaling] -> IF(base) -> the head's train step
  4.. save, restore, initialize, set_learning_rate, then the head's variable-init subgraph
  last            the base's subgraphs, entry first, bytes untouched
The base exists once: signatures reach it through an IF op whose condition is a constant
true, so its weights, XNNPACK packing and arena are not duplicated (measured 1.07x peak RSS
against 1.44x for a copy per signature; see ../shared/NOTES-tflite.md). The input scaling
(--input_range, model_input.py) runs in the signature subgraphs, before the IF. Signature
tensors carry the model's names (contract version 3: metadata `names`).
"""

from __future__ import annotations

import copy
import dataclasses


from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.passes import model_input
from tflite_transfer.compiler.passes.cut import PreparedBase
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.compiler.passes.runtime_versions import MIN_RUNTIME_VERSION
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.contract import INFER, LOAD, SIGNATURES, TRAIN, TRAIN_IMAGES

# Head-only signatures, after train_images in subgraph order.
_STATE_SIGNATURES = (contract.SAVE, contract.RESTORE, contract.INITIALIZE, contract.SET_LEARNING_RATE)


@dataclasses.dataclass(frozen=True)
class FusedModel:
    model: model_io.ModelT
    base_subgraph: int                 # the base's entry subgraph in the fused model
    base_subgraph_count: int           # base subgraphs are [base_subgraph, base_subgraph + n)
    base_buffers: dict[int, int]       # base buffer index -> fused buffer index
    base_subgraph_map: dict[int, int] = dataclasses.field(default_factory=dict)  # base subgraph -> fused


def fuse_base_and_head(base: PreparedBase, head: model_io.ModelT, names: contract.TensorNames | None = None,
                       input_plan: model_input.InputPlan | None = None) -> FusedModel:
    """The fused model; its contract metadata is written once, by the pipeline's serialize pass.
    `names`: the signatures' tensor names (default: the contract's defaults); `input_plan`: the
    input and its scaling (default: the base's input as it is, model_input.py)."""
    entry = base.model.subgraphs[base.entry_subgraph]
    input_template = entry.tensors[entry.inputs[0]]
    names = names or contract.TensorNames()
    input_plan = input_plan or model_input.plan_input(input_template, None, None, None, base.source)
    _check_variable_names(base.model, head)
    editor = graph.GraphEditor(graph.new_model("tflite-transfer: base + trainable head"))
    head_signatures = {s.signatureKey.decode(): s for s in head.signatureDefs}
    head_order = [head_signatures[k].subgraphIndex for k in (INFER, TRAIN, *_STATE_SIGNATURES)]
    head_extra = [i for i in range(len(head.subgraphs)) if i not in head_order]  # variable init
    # Final positions: infer, load, train, train_images, save..set_learning_rate, head extras, base.
    head_map = {head_signatures[key].subgraphIndex: SIGNATURES.index(key)
                for key in (INFER, TRAIN, *_STATE_SIGNATURES)}
    for position, index in enumerate(head_extra, start=len(SIGNATURES)):
        head_map[index] = position
    base_start = len(SIGNATURES) + len(head_extra)
    base_order = [base.entry_subgraph] + [i for i in range(len(base.model.subgraphs)) if i != base.entry_subgraph]
    base_map = {old: base_start + n for n, old in enumerate(base_order)}

    # Base first, so its buffers come right after the sentinel in their original order.
    base_buffers: dict[int, int] = {0: 0}
    base_subgraphs = [editor.import_subgraph(base.model, i, base_buffers, base_map, deduplicate=False)
                      for i in base_order]
    head_buffers: dict[int, int] = {0: 0}
    copy_head = lambda key: editor.import_subgraph(  # noqa: E731
        head, head_signatures[key].subgraphIndex, head_buffers, head_map, deduplicate=True)
    true_buffer = editor.buffer(b"\x01", deduplicate=True)
    base_call = _BaseCall(input_template, input_plan, true_buffer, base_start)
    call_base = lambda key: _call_base_first(  # noqa: E731
        editor, copy_head(key), head_signatures[key], base_call)

    infer, infer_signature = call_base(INFER)
    load, load_signature = _load_subgraph(editor, base_call, base.bottleneck_size)
    train_images, train_images_signature = call_base(TRAIN)
    others = [copy_head(k) for k in _STATE_SIGNATURES]
    extras = [editor.import_subgraph(head, i, head_buffers, head_map, deduplicate=True) for i in head_extra]
    editor.model.subgraphs = [infer, load, copy_head(TRAIN), train_images, *others, *extras, *base_subgraphs]
    for position, name in enumerate(SIGNATURES):
        editor.model.subgraphs[position].name = name.encode()

    signatures = {INFER: infer_signature, LOAD: load_signature, TRAIN: head_signatures[TRAIN],
                  TRAIN_IMAGES: train_images_signature, **{k: head_signatures[k] for k in _STATE_SIGNATURES}}
    editor.model.signatureDefs = [_renamed(signatures[key], key, SIGNATURES.index(key), names) for key in SIGNATURES]
    for signature in editor.model.signatureDefs[:SIGNATURES.index(TRAIN_IMAGES) + 1]:  # role tensors named
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            editor.model.subgraphs[signature.subgraphIndex].tensors[tensor_map.tensorIndex].name = tensor_map.name
    # The base's own metadata (labels, conversion info) is kept; min_runtime_version is set
    # from the fused model's ops by op_versions, so the base's value would be stale.
    for entry in base.model.metadata or []:
        if entry.name not in (MIN_RUNTIME_VERSION, contract.METADATA_KEY.encode()):
            editor.set_metadata(entry.name, model_io.buffer_bytes(base.model, entry.buffer))
    return FusedModel(editor.model, base_start, len(base_order), base_buffers, base_map)


def _renamed(signature, key: str, subgraph: int, names: contract.TensorNames):
    """The signature under its key and position, its role tensors under the model's names (the
    head and the base calls use the contract's defaults; state names never change)."""
    renamed = copy.deepcopy(signature)
    renamed.signatureKey, renamed.subgraphIndex = key.encode(), subgraph
    if key in (INFER, LOAD, TRAIN, TRAIN_IMAGES):
        chosen = {contract.IMAGE: names.input, contract.BOTTLENECK: names.bottleneck,
                  contract.LABEL: names.label, contract.LOSS: names.loss}
        for tensor_map in renamed.inputs or []:
            tensor_map.name = chosen[tensor_map.name.decode()].encode()
        for tensor_map in renamed.outputs or []:  # infer's one output: probabilities/predictions
            default = tensor_map.name.decode()
            tensor_map.name = (names.output if key == INFER else chosen[default]).encode()
    return renamed


@dataclasses.dataclass(frozen=True)
class _BaseCall:
    """How a signature runs the base: its input (scaled as planned), then IF(base)."""
    input_template: object             # the base's input tensor
    plan: model_input.InputPlan
    true_buffer: int
    base_subgraph: int


def _add_base_call(editor: graph.GraphEditor, subgraph, base_call: _BaseCall, bottleneck: int) -> int:
    """Adds the signature's input tensor and, as the subgraph's first ops, the input scaling
    (model_input.py) and IF(true, input) -> bottleneck, which runs the base subgraph. Returns
    the input tensor. The base's input named as the contract's default; _renamed renames it."""
    app_input = graph.append_tensor(
        subgraph, model_input.input_tensor(base_call.input_template, contract.IMAGE, base_call.plan))
    base_input, position = model_input.add_scaling(editor, subgraph, app_input, base_call.plan)
    condition = editor.tensor(subgraph, "base_condition", TensorType.BOOL, [], buffer=base_call.true_buffer)
    editor.op(subgraph, BuiltinOperator.IF, 1, [condition, base_input], [bottleneck],
              graph.options("IfOptions", thenSubgraphIndex=base_call.base_subgraph,
                            elseSubgraphIndex=base_call.base_subgraph), position=position)
    return app_input


def _call_base_first(editor, subgraph, signature, base_call: _BaseCall):
    """Turns a head subgraph taking `bottleneck` into one taking the input: IF(base) goes first."""
    signature = copy.deepcopy(signature)
    bottleneck_map = next(t for t in signature.inputs if t.name == contract.BOTTLENECK.encode())
    bottleneck = bottleneck_map.tensorIndex
    app_input = _add_base_call(editor, subgraph, base_call, bottleneck)
    subgraph.inputs = [app_input if int(t) == bottleneck else int(t) for t in subgraph.inputs]
    bottleneck_map.name, bottleneck_map.tensorIndex = contract.IMAGE.encode(), app_input
    return subgraph, signature


def _load_subgraph(editor, base_call: _BaseCall, bottleneck_size: int):
    subgraph = model_io.schema.SubGraphT()
    bottleneck = editor.tensor(subgraph, contract.BOTTLENECK, TensorType.FLOAT32, [-1, bottleneck_size])
    app_input = _add_base_call(editor, subgraph, base_call, bottleneck)
    subgraph.inputs, subgraph.outputs = [app_input], [bottleneck]
    return subgraph, graph.signature_def(LOAD, SIGNATURES.index(LOAD), {contract.IMAGE: app_input},
                                         {contract.BOTTLENECK: bottleneck})


def _variable_names(model: model_io.ModelT) -> set[bytes]:
    names = set()
    for _, op in graph.operators(model):
        if model_io.builtin_code(model.operatorCodes[op.opcodeIndex]) == BuiltinOperator.VAR_HANDLE:
            names.add(op.builtinOptions.sharedName or b"")
    return names


def _check_variable_names(base: model_io.ModelT, head: model_io.ModelT) -> None:
    """Resource variables are keyed per interpreter by their shared name: a clash would make
    the base and the head silently share one variable."""
    clash = _variable_names(base) & _variable_names(head)
    if clash:
        names = ", ".join(sorted(n.decode(errors="replace") for n in clash))
        raise InvalidInputError(f"conflicting variable names: the base already has resource variables named {names}")
