"""Which ops of a TFLite graph write state: the ops pruning must keep although no output of
theirs is needed, and the ones the base-state pass (compiler/passes/base_state.py) must give
a lifecycle or refuse.

From TFLite's builtin op list (schema.fbs `BuiltinOperator`, kernels in tensorflow/lite/kernels):
- ASSIGN_VARIABLE writes a resource variable; CALL_ONCE runs an init subgraph (once per
  interpreter); HASHTABLE_IMPORT fills a hash table. None of them has an output, so a pruning
  that keeps only ops whose outputs are needed silently drops them (the fused base then never
  initialises nor updates its state).
- LSTM, SVDF, RNN and the (BI/UNI)DIRECTIONAL_SEQUENCE_* ops update the tensors marked
  `is_variable` among their inputs in place (their activation/cell state between invokes).
- An op that runs a subgraph (IF, WHILE, CALL, STABLEHLO_WHILE/CASE/COMPOSITE, CALL_ONCE)
  writes state when anything in that subgraph does.
- RANDOM_UNIFORM, RANDOM_STANDARD_NORMAL, MULTINOMIAL and STABLEHLO_RNG_BIT_GENERATOR keep a
  generator state inside their kernel that advances on every invoke; nothing can read, save
  or reset it (`KERNEL_STATE_OPS`). They have outputs and are kept when needed.
"""

from __future__ import annotations

from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator

STATE_WRITING_OPS = frozenset({BuiltinOperator.ASSIGN_VARIABLE, BuiltinOperator.CALL_ONCE,
                               BuiltinOperator.HASHTABLE_IMPORT})
KERNEL_STATE_OPS = frozenset({BuiltinOperator.RANDOM_UNIFORM, BuiltinOperator.RANDOM_STANDARD_NORMAL,
                              BuiltinOperator.MULTINOMIAL, BuiltinOperator.STABLEHLO_RNG_BIT_GENERATOR})


def code(model: model_io.ModelT, op: model_io.schema.OperatorT) -> int:
    return model_io.builtin_code(model.operatorCodes[op.opcodeIndex])


def variable_inputs(subgraph: model_io.schema.SubGraphT, op: model_io.schema.OperatorT) -> list[int]:
    """The op's inputs marked `is_variable`: state the kernel updates in place."""
    return [int(i) for i in (op.inputs if op.inputs is not None else [])
            if i >= 0 and subgraph.tensors[i].isVariable]


def writes_state(model: model_io.ModelT, subgraph: model_io.schema.SubGraphT, op: model_io.schema.OperatorT,
                 _visiting: frozenset[int] = frozenset()) -> bool:
    """True when running the op changes state that outlives the invoke (see the module doc)."""
    if code(model, op) in STATE_WRITING_OPS or variable_inputs(subgraph, op):
        return True
    for index in model_io.called_subgraphs(op):
        if index in _visiting or not 0 <= index < len(model.subgraphs):
            continue
        callee = model.subgraphs[index]
        if any(writes_state(model, callee, inner, _visiting | {index}) for inner in callee.operators or []):
            return True
    return False
