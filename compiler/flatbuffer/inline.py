"""Inlining a called subgraph: the graph API's way to turn an IF (or CALL) into the ops of the
subgraph it runs, for consumers that accept a single subgraph (MediaPipe Tasks, Arm NN).

The callee's tensors are copied into the caller (same model, so they keep their buffers), its
inputs are bound to the op's arguments and its outputs written straight into the op's output
tensors, so nothing that names those tensors (subgraph outputs, signatures, later ops) changes.
"""

from __future__ import annotations

import copy

from tflite_transfer.compiler.errors import UnsupportedModelError
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator

# The ops whose first input is a condition, not an argument of the callee.
_CONDITION_FIRST = (BuiltinOperator.IF,)


def inline_call(model: model_io.ModelT, subgraph_index: int, position: int, callee_index: int) -> int:
    """Replaces op `position` of the subgraph (an IF or CALL running `callee_index`) by a copy of
    the callee's ops; returns how many ops took its place. The callee itself stays (other ops may
    call it); select_subgraphs drops it when nothing does."""
    caller, callee = model.subgraphs[subgraph_index], model.subgraphs[callee_index]
    op = caller.operators[position]
    code = model_io.builtin_code(model.operatorCodes[op.opcodeIndex])
    arguments = list(op.inputs[1:] if code in _CONDITION_FIRST else op.inputs)
    results = list(op.outputs)
    what = f"{model_io.operator_name(model.operatorCodes[op.opcodeIndex])} op {position} of subgraph {subgraph_index}"
    if len(arguments) != len(callee.inputs) or len(results) != len(callee.outputs):
        raise UnsupportedModelError(f"{what} passes {len(arguments)} inputs / takes {len(results)} outputs "
                                    f"but subgraph {callee_index} has {len(callee.inputs)} / {len(callee.outputs)}")
    mapping: dict[int, int] = {int(t): int(a) for t, a in zip(callee.inputs, arguments)}
    for tensor, result in zip(callee.outputs, results):
        if int(tensor) in mapping:  # an input passed straight through, or one tensor output twice
            raise UnsupportedModelError(f"{what}: subgraph {callee_index} returns tensor {tensor} "
                                        "unchanged or twice; it cannot be inlined without a copy op")
        mapping[int(tensor)] = int(result)
        _check_same_tensor(caller.tensors[result], callee.tensors[tensor], what)
    for index, tensor in enumerate(callee.tensors):
        if index not in mapping:
            mapping[index] = graph.append_tensor(caller, copy.deepcopy(tensor))

    def remap(indices):
        return [mapping[int(t)] if t >= 0 else -1 for t in indices]

    inlined = []
    for callee_op in callee.operators:
        new_op = copy.deepcopy(callee_op)
        new_op.inputs, new_op.outputs = remap(callee_op.inputs), remap(callee_op.outputs)
        if callee_op.intermediates is not None:
            new_op.intermediates = remap(callee_op.intermediates)
        inlined.append(new_op)
    caller.operators[position:position + 1] = inlined
    return len(inlined)


def _check_same_tensor(result, produced, what: str) -> None:
    """The op's output tensor takes the callee's output: same type, compatible shapes (-1 fits
    any size), the callee's quantization; a difference would change what later ops read."""
    shapes = model_io.tensor_shape(result), model_io.tensor_shape(produced)
    compatible = len(shapes[0]) == len(shapes[1]) and all(a == b or -1 in (a, b) for a, b in zip(*shapes))
    if result.type != produced.type or not compatible:
        raise UnsupportedModelError(
            f"{what}: output '{model_io.tensor_name(result)}' is {model_io.tensor_type_name(result.type)} "
            f"{model_io.tensor_shape(result)} but the callee produces "
            f"{model_io.tensor_type_name(produced.type)} {model_io.tensor_shape(produced)}")
    if _quantization(result) != _quantization(produced):
        result.quantization = copy.deepcopy(produced.quantization)


def _quantization(tensor) -> tuple:
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return ()
    return tuple(float(s) for s in q.scale), tuple(int(z) for z in (q.zeroPoint if q.zeroPoint is not None else ()))
