"""compiler/flatbuffer/inline.py: an IF replaced by the ops of the subgraph it runs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import interpreter, random_images
from tflite_transfer.compiler.errors import UnsupportedModelError
from tflite_transfer.compiler.flatbuffer import graph, inline, model_io
from tflite_transfer.runtime import contract


def _load_and_its_if(model):
    load = model_io.signature_subgraph(model, contract.LOAD)
    position = next(p for p, op in enumerate(model.subgraphs[load].operators) if model_io.called_subgraphs(op))
    return load, position, model_io.called_subgraphs(model.subgraphs[load].operators[position])[0]


def test_load_with_its_base_inlined_is_one_subgraph_and_bit_identical(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    load, position, base = _load_and_its_if(model)
    added = inline.inline_call(model, load, position, base)
    assert added == len(model.subgraphs[base].operators)
    graph.select_subgraphs(model, [load])
    graph.prune_tensors(model, 0)
    graph.compact_buffers(model)
    assert len(model.subgraphs) == 1 and not any(model_io.called_subgraphs(op) for op in model.subgraphs[0].operators)
    images = random_images((16, 12, 3), np.uint8, 3, seed=4)
    for xnnpack in (True, False):
        ours = interpreter(model_io.write_model_bytes(model), xnnpack=xnnpack).get_signature_runner(contract.LOAD)
        fused = interpreter(tiny_fused.model_bytes, xnnpack=xnnpack).get_signature_runner(contract.LOAD)
        np.testing.assert_array_equal(ours(image=images)[contract.BOTTLENECK], fused(image=images)[contract.BOTTLENECK])


def test_a_callee_that_does_not_fit_the_call_is_refused(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    load, position, base = _load_and_its_if(model)
    model.subgraphs[load].operators[position].outputs = []
    with pytest.raises(UnsupportedModelError, match=r"IF op \d+ of subgraph \d+ passes 1 inputs / takes 0 outputs"):
        inline.inline_call(model, load, position, base)
