"""Dataflow checks of a model whose digest was not checked, after runtime/model_structure.py
proved every index in range (it hands over its records): what TFLite's kernels assume of a
converter's output and crash on when it is false. The C++ runtime checks the same rules
(runtime/cpp/src/model_dataflow.cc); each one was a crash (SIGSEGV, a heap corruption) in a
digest-off fuzz campaign of one runtime or the other (benchmarks/fuzz).

Per subgraph: every op reads only tensors written before it (subgraph inputs, earlier ops'
outputs), constants, variable tensors or tensors without elements; every tensor is written by at
most one op, never a subgraph input or a constant; every subgraph output is written; ops that only
move data keep their tensors' type; variables are read and assigned through resource tensors (a
READ_VARIABLE with exactly one output), and every read and assignment of one variable has one
shape; IF and WHILE pass their subgraphs tensors of the right number and types; reduction axes
given as constants lie inside the input's rank.
"""

from __future__ import annotations

import numpy as np

from tflite_transfer.runtime import model_structure

_RESOURCE = model_structure.schema().TensorType.RESOURCE
# Ops that only move data: their outputs keep the input's type (a RESHAPE fed an int8 constant
# into a float output read past the constant).
_MOVES_DATA = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CONCATENATION", "PACK", "UNPACK", "SLICE",
               "STRIDED_SLICE", "TILE", "PAD", "PADV2", "GATHER", "BROADCAST_TO", "REVERSE_V2", "SPLIT_V"}
_REDUCTIONS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL"}


def check_dataflow(graphs: list, buffers: list, fail) -> None:
    """`graphs`, `buffers`: model_structure's GraphRecord and BufferRecord lists; `fail(problem)`
    raises the one-line error naming the file."""
    variable_shapes: dict[tuple, dict[tuple, str]] = {}
    for graph in graphs:
        _check_graph(graph, graphs, buffers, fail, variable_shapes)
    for (_, name), shapes in variable_shapes.items():
        if len(shapes) > 1:
            where = list(shapes.values())[1]
            fail(f"{where} reads or assigns variable '{name}' with a shape it has nowhere else")


def _holds_data(tensor, buffers) -> bool:
    """A constant as TFLite's verifier sees one: a buffer of its own with a data vector (possibly
    empty), or data stored after the FlatBuffer."""
    return tensor.buffer != 0 and (buffers[tensor.buffer].has_data or buffers[tensor.buffer].offset > 1)


def _is_constant(tensor, buffers) -> bool:
    return tensor.buffer != 0 and (buffers[tensor.buffer].data_bytes > 0 or buffers[tensor.buffer].offset > 1)


def _check_graph(graph, graphs, buffers, fail, variable_shapes) -> None:
    tensors = graph.tensors
    written = set(graph.inputs)
    producers = {}
    for op in graph.ops:
        for index in op.inputs:
            tensor = tensors[index] if index >= 0 else None
            # An op reading a tensor nothing has written yet read garbage through a handle.
            if tensor is not None and index not in written and not _holds_data(tensor, buffers) \
                    and not tensor.is_variable and 0 not in tensor.shape:
                fail(f"{op.where} reads tensor {index}, which no earlier op writes")
        for index in op.outputs:
            if index < 0:
                continue
            # Two writers of one tensor: one overwrote the other's memory (munmap_chunk()).
            if index in written:
                fail(f"{op.where} writes tensor {index}, which is written already")
            if _is_constant(tensors[index], buffers):
                fail(f"{op.where} writes into constant tensor {index}")
            written.add(index)
            producers[index] = op
        _check_types(op, tensors, graphs, fail)
        _check_reduction_axes(op, tensors, buffers, fail)
        _note_variable(op, tensors, producers, fail, variable_shapes)
    for index in graph.outputs:  # a READ_VARIABLE that lost its output left `restore`'s output unset
        if index not in written and not _holds_data(tensors[index], buffers) and not tensors[index].is_variable:
            fail(f"subgraph output tensor {index} is written by no op")


def _check_types(op, tensors, graphs, fail) -> None:
    inputs = [index for index in op.inputs if index >= 0]
    outputs = [index for index in op.outputs if index >= 0]
    if op.name in _MOVES_DATA and op.inputs and op.inputs[0] >= 0:
        kind = tensors[op.inputs[0]].type
        same = outputs + (inputs if op.name in ("CONCATENATION", "PACK") else [])
        if any(tensors[index].type != kind for index in same):
            fail(f"{op.where} ({op.name}) mixes tensor types in an op that moves data")
    if op.name in ("READ_VARIABLE", "ASSIGN_VARIABLE") and (
            not op.inputs or op.inputs[0] < 0 or tensors[op.inputs[0]].type != _RESOURCE):
        fail(f"{op.where} ({op.name}) reads or assigns a variable through a tensor that is not a resource")
    if op.name == "READ_VARIABLE" and len(outputs) != 1:
        fail(f"{op.where} (READ_VARIABLE) has {len(outputs)} outputs, not 1")
    if op.name == "VAR_HANDLE" and (len(outputs) != 1 or tensors[outputs[0]].type != _RESOURCE):
        fail(f"{op.where} makes a variable handle that is not one resource tensor")
    if op.name == "IF":
        for branch in (op.options.thenSubgraphIndex, op.options.elseSubgraphIndex):
            _check_call(op, tensors, 1, graphs[branch], fail)
    if op.name == "WHILE":
        _check_call(op, tensors, 0, graphs[op.options.bodySubgraphIndex], fail)


def _check_call(op, tensors, skip: int, callee, fail) -> None:
    """IF and WHILE hand their subgraph their inputs (after `skip` of their own) and take its
    outputs: as many of each, of the same types (TFLite copies them byte for byte)."""
    for mine, theirs in ((op.inputs[skip:], callee.inputs), (op.outputs, callee.outputs)):
        if len(mine) != len(theirs):
            fail(f"{op.where} ({op.name}) passes a subgraph the wrong number of tensors")
        for index, other in zip(mine, theirs):
            if index < 0 or tensors[index].type != callee.tensors[other].type:
                fail(f"{op.where} ({op.name}) passes a subgraph a tensor of another type")


def _check_reduction_axes(op, tensors, buffers, fail) -> None:
    """A reduction over a constant axis outside the input's rank read past the shape (SIGABRT)."""
    if op.name not in _REDUCTIONS or len(op.inputs) < 2 or op.inputs[0] < 0 or op.inputs[1] < 0:
        return
    axes, rank = tensors[op.inputs[1]], len(tensors[op.inputs[0]].shape)
    if axes.type != model_structure.schema().TensorType.INT32 or not axes.buffer:
        return
    buffer = buffers[axes.buffer]
    if not buffer.data_bytes:
        return
    values = np.frombuffer(bytes(buffer.table.DataAsNumpy()), "<i4", count=buffer.data_bytes // 4)
    bad = values[(values < -rank) | (values >= rank)]
    if bad.size:
        fail(f"{op.where} ({op.name}) reduces over axis {bad[0]} of a rank {rank} tensor")


def _note_variable(op, tensors, producers, fail, variable_shapes) -> None:
    """Variables are keyed by VAR_HANDLE's (container, shared_name); every READ_VARIABLE output and
    ASSIGN_VARIABLE value of one variable must have one shape (a read into a tensor of another
    shape overran it: SIGSEGV)."""
    if op.name == "READ_VARIABLE" and op.outputs:
        value = op.outputs[0]
    elif op.name == "ASSIGN_VARIABLE" and len(op.inputs) > 1:
        value = op.inputs[1]
    else:
        return
    producer = producers.get(op.inputs[0])
    if value < 0 or producer is None or producer.name != "VAR_HANDLE":
        return  # a handle passed in from another subgraph: its reads are checked where it is made
    if producer.options is None:
        fail(f"{op.where} uses a variable handle without its name")
    tensor = tensors[value]
    if any(size < 0 for size in tensor.signature):
        return  # a dynamic dimension: not known here
    key = (_text(producer.options.container), _text(producer.options.sharedName))
    variable_shapes.setdefault(key, {}).setdefault(tuple(tensor.shape), op.where)


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")
