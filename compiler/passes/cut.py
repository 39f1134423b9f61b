"""Prepares a base model for fusion: picks its entry subgraph, cuts it at the bottleneck
(`--base_output`), drops the ops the bottleneck does not need (never an op that writes state:
graph.prune_ops), finds the state the base keeps between calls (base_state.py), and appends the
adapter (DEQUANTIZE, then RESHAPE, MEAN or REDUCE_MAX) that turns the bottleneck into float32
[batch, features]. A spatial cut [batch, H, W, C] (or [batch, T, C]) needs a chosen adapter
(`--bottleneck_adapter`): flatten (H*W*C features, what TensorFlow's example app uses),
mean or max (global pooling over the spatial axes: C features).

Kept tensors and buffers are the user's bytes, untouched; adapter tensors come after them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib

import numpy as np

from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.passes import base_state
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.runtime import contract

_QUANTIZED_TYPES = {TensorType.INT8: 2, TensorType.UINT8: 1}  # -> DEQUANTIZE version


@dataclasses.dataclass(frozen=True)
class PreparedBase:
    model: model_io.ModelT     # the base with the entry subgraph cut and adapted
    entry_subgraph: int        # subgraph computing input -> bottleneck
    bottleneck_size: int
    kept_tensor_count: int     # tensors [0, n) of the entry subgraph are the user's, unchanged
    source: str
    cut_in_original: int = -1  # the bottleneck's tensor index in the user's entry subgraph
    state: base_state.BaseState = base_state.BaseState()   # variables the base writes on every call
    adapter: dict | None = None  # {kind, cut_shape} when a spatial cut was adapted


def prepare_base(model: model_io.ModelT, base_output: str | None = None,
                 source: str = "base", adapter: str | None = None) -> PreparedBase:
    model = copy.deepcopy(model)
    entry = _entry_subgraph(model, source)
    subgraph = model.subgraphs[entry]
    if subgraph.inputs is None or len(subgraph.inputs) != 1:
        count = 0 if subgraph.inputs is None else len(subgraph.inputs)
        raise UnsupportedModelError(f"{source}: the base must take one input (an image or any tensor), it takes {count}")
    output = _find_output(model, entry, base_output, source)
    needed = graph.prune_ops(model, subgraph, [output])
    if int(subgraph.inputs[0]) not in needed:
        raise InvalidInputError(
            f"tensor '{model_io.tensor_name(subgraph.tensors[output])}' does not depend on the base's input")
    graph.prune_tensors(model, entry)
    kept = len(subgraph.tensors)
    state = base_state.find_base_state(model, entry, source)
    bottleneck_size, adapted = append_adapter(graph.GraphEditor(model), subgraph, source, adapter)
    return PreparedBase(model, entry, bottleneck_size, kept, source, output, state, adapted)


def _entry_subgraph(model: model_io.ModelT, source: str) -> int:
    signatures = model.signatureDefs or []
    if not signatures:
        return 0
    if len(signatures) == 1:
        return signatures[0].subgraphIndex
    keys = [s.signatureKey.decode() for s in signatures]
    if "serving_default" in keys:
        return signatures[keys.index("serving_default")].subgraphIndex
    raise UnsupportedModelError(
        f"{source}: the base has several signatures ({', '.join(keys)}); give a base with one")


def _find_output(model: model_io.ModelT, entry: int, base_output: str | None, source: str) -> int:
    subgraph = model.subgraphs[entry]
    if base_output is None:
        if len(subgraph.outputs) != 1:
            names = [model_io.tensor_name(subgraph.tensors[i]) for i in subgraph.outputs]
            raise InvalidInputError(
                f"{source}: the base has {len(names)} outputs ({', '.join(names)}); "
                "choose the bottleneck with --base_output")
        return int(subgraph.outputs[0])
    for signature in model.signatureDefs or []:
        for tensor_map in signature.outputs or []:
            if tensor_map.name.decode() == base_output and signature.subgraphIndex == entry:
                return int(tensor_map.tensorIndex)
    names = [model_io.tensor_name(t) for t in subgraph.tensors]
    if base_output in names:
        return names.index(base_output)
    close = difflib.get_close_matches(base_output, names, n=3, cutoff=0.3)
    hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    raise InvalidInputError(f"{source}: no tensor named '{base_output}' (--base_output){hint}")


def append_adapter(editor: graph.GraphEditor, subgraph, source: str,
                   adapter: str | None) -> tuple[int, dict | None]:
    """Appends DEQUANTIZE and the adapter so the subgraph outputs float32 [batch, features];
    returns the feature count and the adapter as the metadata records it (None: no choice made).
    Also used by checks/reproduction.py to adapt the original's bottleneck the same way."""
    output = int(subgraph.outputs[0])
    tensor = subgraph.tensors[output]
    shape = model_io.tensor_shape(tensor)
    name = model_io.tensor_name(tensor)
    described = f"'{name}' {shape} {model_io.tensor_type_name(tensor.type)}"
    if len(shape) not in (2, 3, 4) or min(shape[1:]) <= 0:
        raise InvalidInputError(
            f"{source}: bottleneck tensor {described} is not [batch, features] or a map "
            "[batch, H, W, C] / [batch, T, C] with static sizes; cut elsewhere with --base_output")
    if tensor.type not in (TensorType.FLOAT32, *_QUANTIZED_TYPES):
        raise UnsupportedModelError(f"{source}: bottleneck tensor {described}: expected float32, int8 or uint8")
    pooled_map = len(shape) == 4 and shape[1] == 1 and shape[2] == 1   # [batch, 1, 1, C]: one value per channel
    if adapter is None and len(shape) > 2 and not pooled_map:
        counts = {kind: _feature_count(kind, shape) for kind in contract.BOTTLENECK_ADAPTERS}
        raise InvalidInputError(
            f"{source}: bottleneck tensor {described} is a spatial map; choose --bottleneck_adapter: "
            + ", ".join(f"{kind} ({count} features)" for kind, count in counts.items()))
    if adapter is not None and len(shape) == 2:
        raise InvalidInputError(f"{source}: --bottleneck_adapter={adapter} applies to a spatial cut; "
                                f"bottleneck tensor {described} is already [batch, features]")
    if tensor.type in _QUANTIZED_TYPES:
        dequantized = editor.tensor(subgraph, f"{name}/dequantized", TensorType.FLOAT32, shape)
        editor.op(subgraph, BuiltinOperator.DEQUANTIZE, _QUANTIZED_TYPES[tensor.type], [output], [dequantized])
        output = dequantized
    kind = adapter or ("flatten" if len(shape) > 2 else None)
    features = _feature_count(kind, shape) if kind else shape[-1]
    if kind == "flatten":
        new_shape = editor.tensor(subgraph, f"{contract.BOTTLENECK}/shape", TensorType.INT32, [2],
                                  data=np.array([-1, features], np.int32).tobytes())
        flat = editor.tensor(subgraph, contract.BOTTLENECK, TensorType.FLOAT32, [-1, features])
        editor.op(subgraph, BuiltinOperator.RESHAPE, 1, [output, new_shape], [flat],
                  graph.options("ReshapeOptions", newShape=[-1, features]))
        output = flat
    elif kind in ("mean", "max"):
        axes = list(range(1, len(shape) - 1))   # the spatial (or time) axes
        axes_tensor = editor.tensor(subgraph, f"{contract.BOTTLENECK}/axes", TensorType.INT32, [len(axes)],
                                    data=np.array(axes, np.int32).tobytes())
        pooled = editor.tensor(subgraph, contract.BOTTLENECK, TensorType.FLOAT32, [-1, features])
        code = BuiltinOperator.MEAN if kind == "mean" else BuiltinOperator.REDUCE_MAX
        editor.op(subgraph, code, 1, [output, axes_tensor], [pooled], graph.options("ReducerOptions", keepDims=False))
        output = pooled
    subgraph.outputs = [output]
    recorded = {"kind": adapter, "cut_shape": shape[1:]} if adapter else None
    return features, recorded


def _feature_count(adapter: str, shape: list[int]) -> int:
    return int(np.prod(shape[1:])) if adapter == "flatten" else shape[-1]
