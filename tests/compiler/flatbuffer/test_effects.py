"""compiler/flatbuffer/effects.py and graph.prune_ops: ops that write state are kept by pruning
with what they depend on, also when no output of theirs is needed."""

from __future__ import annotations

import collections

from tflite_transfer.compiler.flatbuffer import effects, graph, model_io


def names(model, subgraph) -> collections.Counter:
    return collections.Counter(model_io.operator_name(model.operatorCodes[op.opcodeIndex])
                               for op in subgraph.operators)


def test_pruning_keeps_what_writes_state(stateful_files):
    _, base = stateful_files("float")
    model = model_io.read_model_bytes(base.tflite)
    main = model.subgraphs[0]
    before = names(model, main)
    features = next(int(m.tensorIndex) for m in model.signatureDefs[0].outputs if m.name == b"features")
    graph.prune_ops(model, main, [features])
    after = names(model, main)
    assert before - after == collections.Counter({"FULLY_CONNECTED": 1, "SOFTMAX": 1})   # the classifier
    assert after["ASSIGN_VARIABLE"] == 2 and after["CALL_ONCE"] == 1 and after["CONCATENATION"] == 1
    assert list(main.outputs) == [features]


def test_pruning_to_a_tensor_before_the_updates_keeps_them(stateful_files):
    """Cut at the frame input's reshape: the ring buffer and counter updates still run."""
    _, base = stateful_files("float")
    model = model_io.read_model_bytes(base.tflite)
    main = model.subgraphs[0]
    counter_read = next(int(op.outputs[0]) for op in main.operators
                        if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "READ_VARIABLE")
    graph.prune_ops(model, main, [counter_read])
    kept = names(model, main)
    assert kept["ASSIGN_VARIABLE"] == 2 and kept["CONCATENATION"] == 1 and kept["FULLY_CONNECTED"] == 0


def test_callers_of_subgraphs_that_write_state_write_state(stateful_compiled, tiny_fused):
    for result, expected in ((stateful_compiled("float"), True), (tiny_fused, False)):
        model = model_io.read_model_bytes(result.model_bytes)
        load = model.subgraphs[model_io.signature_subgraph(model, "load")]
        base_call = next(op for op in load.operators
                         if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "IF")
        assert effects.writes_state(model, load, base_call) is expected
