"""compiler/flatbuffer/graph.py: the graph-editing API keeps every reference in step."""

from __future__ import annotations

import numpy as np

from tests.helpers import interpreter
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.runtime import contract


def test_op_codes_are_deduplicated(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    editor = graph.GraphEditor(model)
    before = len(model.operatorCodes)
    existing = editor.builtin(BuiltinOperator.IF, 1)
    assert model_io.operator_name(model.operatorCodes[existing]) == "IF"
    new = editor.builtin(BuiltinOperator.SQUARED_DIFFERENCE, 1)
    assert editor.builtin(BuiltinOperator.SQUARED_DIFFERENCE, 1) == new
    assert len(model.operatorCodes) == before + 1


def test_buffers_deduplicate_only_when_asked(tiny_fused):
    editor = graph.GraphEditor(model_io.read_model_bytes(tiny_fused.model_bytes))
    assert editor.buffer(None) == 0
    first = editor.buffer(b"abc", deduplicate=True)
    assert editor.buffer(b"abc", deduplicate=True) == first
    assert editor.buffer(b"abc") != first


def test_prune_and_select_keep_signatures_and_calls_working(tiny_fused):
    """Keep only `load` (subgraph 1) and the base it calls; drop a dead tensor: still runs."""
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    load = model_io.signature_subgraph(model, contract.LOAD)
    base = model_io.called_subgraphs(model.subgraphs[load].operators[0])[0]
    editor = graph.GraphEditor(model)
    dead = editor.tensor(model.subgraphs[load], "dead", TensorType.FLOAT32, [3], data=np.ones(3, np.float32).tobytes())
    model.subgraphs[load].tensors.insert(0, model.subgraphs[load].tensors.pop(dead))  # dead first
    for op in model.subgraphs[load].operators:
        op.inputs = [(t + 1) if t >= 0 else t for t in op.inputs]
        op.outputs = [t + 1 for t in op.outputs]
    subgraph = model.subgraphs[load]
    subgraph.inputs = [t + 1 for t in subgraph.inputs]
    subgraph.outputs = [t + 1 for t in subgraph.outputs]
    signature = next(s for s in model.signatureDefs if s.signatureKey.decode() == contract.LOAD)
    for mapping in [*signature.inputs, *signature.outputs]:
        mapping.tensorIndex += 1
    mapping = graph.select_subgraphs(model, [load, *range(base, len(model.subgraphs))])
    assert [s.signatureKey.decode() for s in model.signatureDefs] == [contract.LOAD]
    assert set(model_io.called_subgraphs(model.subgraphs[0].operators[0])) == {mapping[base]}
    remap = graph.prune_tensors(model, 0)
    assert 0 not in remap and all(model_io.tensor_name(t) != "dead" for t in model.subgraphs[0].tensors)
    buffers = len(model.buffers)
    graph.compact_buffers(model)
    assert len(model.buffers) < buffers
    runner = interpreter(model_io.write_model_bytes(model)).get_signature_runner(contract.LOAD)
    image = np.zeros((2, 16, 12, 3), np.uint8)
    assert runner(image=image)[contract.BOTTLENECK].shape == (2, tiny_fused.metadata.bottleneck_size)


def test_set_metadata_replaces_its_own_buffer_in_place(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    buffers = len(model.buffers)
    graph.set_metadata(model, "note", b"one")
    assert len(model.buffers) == buffers + 1
    graph.set_metadata(model, "note", b"two")
    assert len(model.buffers) == buffers + 1 and graph.get_metadata(model, "note") == b"two"
    assert graph.get_metadata(model, "absent") is None


def test_an_empty_constant_keeps_a_present_empty_data_vector(tiny_fused):
    """TFLite's verifier takes a tensor for a constant only when its buffer (not 0) has a data
    vector; an empty one (a RESHAPE to a scalar's shape [0]) must survive a write and a read."""
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    editor = graph.GraphEditor(model)
    empty = editor.buffer(b"")
    assert empty != 0 and editor.buffer(b"", deduplicate=True) != 0
    index = editor.tensor(model.subgraphs[0], "empty_shape", TensorType.INT32, [0], data=b"")
    reread = model_io.read_model_bytes(model_io.write_model_bytes(model))
    tensor = reread.subgraphs[0].tensors[index]
    assert tensor.buffer != 0 and model_io.buffer_data(reread, tensor.buffer) == b""
    assert model_io.is_constant(reread, tensor)
    assert model_io.buffer_data(reread, 0) is None
    computed = reread.subgraphs[0].tensors[reread.subgraphs[0].outputs[0]]
    assert not model_io.is_constant(reread, computed)


def test_fused_models_keep_the_heads_empty_constants(tiny_fused):
    """The converted head reshapes its loss to a scalar with an empty shape constant: in the
    fused model it is a constant on its own buffer, never on the sentinel 0."""
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    empty = [(index, t) for index, subgraph in enumerate(model.subgraphs) for t in subgraph.tensors
             if t.shape is not None and list(t.shape) == [0] and model_io.buffer_data(model, t.buffer) is not None]
    assert empty, "the tiny model's train step has no empty constant any more: pick another probe"
    assert all(t.buffer != 0 for _, t in empty)
