"""Prepares a base model for fusion: picks its entry subgraph, cuts it at the bottleneck
(`--base_output`), drops the ops the bottleneck does not need (never an op that writes state:
graph.prune_ops), finds the state the base keeps between calls (base_state.py), and appends the
adapter (DEQUANTIZE, RESHAPE) that turns the bottleneck into float32 [batch, features].

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
    entry_subgraph: int        # subgraph computing image -> bottleneck
    bottleneck_size: int
    kept_tensor_count: int     # tensors [0, n) of the entry subgraph are the user's, unchanged
    source: str
    cut_in_original: int = -1  # the bottleneck's tensor index in the user's entry subgraph
    state: base_state.BaseState = base_state.BaseState()   # variables the base writes on every call


def prepare_base(model: model_io.ModelT, base_output: str | None = None,
                 source: str = "base") -> PreparedBase:
    model = copy.deepcopy(model)
    entry = _entry_subgraph(model, source)
    subgraph = model.subgraphs[entry]
    if subgraph.inputs is None or len(subgraph.inputs) != 1:
        count = 0 if subgraph.inputs is None else len(subgraph.inputs)
        raise UnsupportedModelError(f"{source}: the base must take one input (an image), it takes {count}")
    output = _find_output(model, entry, base_output, source)
    needed = graph.prune_ops(model, subgraph, [output])
    if int(subgraph.inputs[0]) not in needed:
        raise InvalidInputError(
            f"tensor '{model_io.tensor_name(subgraph.tensors[output])}' does not depend on the image input")
    graph.prune_tensors(model, entry)
    kept = len(subgraph.tensors)
    state = base_state.find_base_state(model, entry, source)
    bottleneck_size = append_adapter(graph.GraphEditor(model), subgraph, source)
    return PreparedBase(model, entry, bottleneck_size, kept, source, output, state)


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


def append_adapter(editor: graph.GraphEditor, subgraph, source: str) -> int:
    """Appends DEQUANTIZE / RESHAPE so the subgraph outputs float32 [batch, features]
    (also used by checks/reproduction.py to adapt the original's bottleneck the same way)."""
    output = int(subgraph.outputs[0])
    tensor = subgraph.tensors[output]
    shape = model_io.tensor_shape(tensor)
    name = model_io.tensor_name(tensor)
    described = f"'{name}' {shape} {model_io.tensor_type_name(tensor.type)}"
    spatial_ones = len(shape) == 4 and shape[1] == 1 and shape[2] == 1
    if len(shape) not in (2, 4) or (len(shape) == 4 and not spatial_ones) or shape[-1] <= 0:
        raise InvalidInputError(
            f"{source}: bottleneck tensor {described} is not rank 2 [batch, features] "
            "(or [batch, 1, 1, features]); cut after the global pooling with --base_output")
    if tensor.type not in (TensorType.FLOAT32, *_QUANTIZED_TYPES):
        raise UnsupportedModelError(f"{source}: bottleneck tensor {described}: expected float32, int8 or uint8")
    features = shape[-1]
    if tensor.type in _QUANTIZED_TYPES:
        dequantized = editor.tensor(subgraph, f"{name}/dequantized", TensorType.FLOAT32, shape)
        editor.op(subgraph, BuiltinOperator.DEQUANTIZE, _QUANTIZED_TYPES[tensor.type], [output], [dequantized])
        output = dequantized
    if len(shape) == 4:
        new_shape = editor.tensor(subgraph, f"{contract.BOTTLENECK}/shape", TensorType.INT32, [2],
                                  data=np.array([-1, features], np.int32).tobytes())
        flat = editor.tensor(subgraph, contract.BOTTLENECK, TensorType.FLOAT32, [-1, features])
        editor.op(subgraph, BuiltinOperator.RESHAPE, 1, [output, new_shape], [flat],
                  graph.options("ReshapeOptions", newShape=[-1, features]))
        output = flat
    subgraph.outputs = [output]
    return features
