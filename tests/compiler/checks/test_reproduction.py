"""compiler/checks/reproduction.py: the compiled `load` against the user's original file at the
cut, over a sequence of calls, bit for bit under the same kernels; it passes on every base the
compiler accepts, and it fails on the bytes the compiler wrote before stateful bases kept
their state (graph.prune_ops dropping ASSIGN_VARIABLE and CALL_ONCE)."""

from __future__ import annotations

import pytest

from tests.fixtures import stateful_bases
from tests.fixtures.bases import tiny_uint8_classifier
from tflite_transfer.compiler import pipeline
from tflite_transfer.compiler.base import sources
from tflite_transfer.compiler.checks import reproduction
from tflite_transfer.compiler.cli import summary
from tflite_transfer.compiler.errors import VerificationError
from tflite_transfer.compiler.flatbuffer import graph, model_io


def old_prune_ops(model, subgraph, outputs):
    """graph.prune_ops as it was: an op is kept only when one of its outputs is needed."""
    needed = {int(t) for t in outputs}
    kept = []
    for op in reversed(subgraph.operators or []):
        if any(int(t) in needed for t in op.outputs):
            kept.append(op)
            needed.update(graph._op_tensors(op))
    subgraph.operators = kept[::-1]
    subgraph.outputs = [int(t) for t in outputs]
    return needed


@pytest.fixture(scope="module")
def int8_stateful_path(tmp_path_factory):
    base = stateful_bases.stateful_base("int8")
    path = tmp_path_factory.mktemp("stateful") / "streaming_int8.tflite"
    path.write_bytes(base.tflite)
    return str(path), base.features


def passes_until(base, stop):
    """Runs the pipeline's passes on `base` up to (not including) the pass `stop`."""
    plan = pipeline.make_plan(pipeline.HeadOptions(num_classes=3, learning_rate=0.1), verify_steps=0)
    build = pipeline.Build(base)
    for step in pipeline.PASSES:
        if step.run is stop:
            return plan, build
        build = step.run(plan, build)
    raise AssertionError(f"no pass {stop}")


def test_stateless_bases_pass_with_the_cut_inside_or_at_the_output(tiny_fused, small_fused):
    inside = tiny_fused.reproduction        # cut at the pool, an intermediate tensor
    assert inside.calls == reproduction.CALLS == 4 and inside.copied_for_xnnpack and not inside.stateful
    at_output = small_fused.reproduction    # the embedded MobileNetV2 ends at its bottleneck
    assert not at_output.copied_for_xnnpack
    text = summary.format_summary(tiny_fused, "model.tflite")
    assert "proof: `load` equals the original file's" in text and "bit for bit over 4 calls" in text


def test_a_model_over_another_base_fails_on_the_first_call(tiny_fused):
    """The same architecture with other weights as the original: the check is not vacuous for
    stateless bases (the cut is the same tensor index in both files)."""
    other = tiny_uint8_classifier(seed=2)
    with pytest.raises(VerificationError, match=r"does not reproduce other.tflite's tensor .* call 1 of 4 "
                                                r"\(XNNPACK\) differs by up to"):
        reproduction.check_load_reproduces_base(
            tiny_fused.model_bytes, other, model_io.read_model_bytes(other), 0,
            tiny_fused_cut(tiny_fused), source="other.tflite")


def tiny_fused_cut(result) -> int:
    from tflite_transfer.compiler.passes import cut

    return cut.prepare_base(result.base.model, result.base.cut_at).cut_in_original


def test_the_check_fails_on_the_bytes_the_old_pruning_wrote(int8_stateful_path, monkeypatch):
    """The silent wrong function of a streaming base, reproduced with the old pruning: the
    model passes every other check of its time (it compiled with exit 0), and this check
    refuses it: `load` does not follow the original's stream."""
    path, features = int8_stateful_path
    monkeypatch.setattr(graph, "prune_ops", old_prune_ops)
    base = sources.load_base(sources.BaseOptions(base=path, base_output=features), lambda m: None)
    plan, build = passes_until(base, pipeline.audit_final_model)
    assert not build.prepared.state.variables            # the state went unnoticed
    pipeline.run_every_signature(plan, build)            # ... and every signature runs
    # The old pruning kept READ_VARIABLE but dropped the CALL_ONCE that assigns the initial
    # state, so `load` reads memory nothing wrote: call 1 matches only when it happened to hold
    # the initial values (zeros), and which call differs first depends on the heap.
    with pytest.raises(VerificationError, match=r"`load` (does not reproduce .*'StatefulPartitionedCall:0'"
                                                r".* call [1-4] of 4|fails on call)"):
        pipeline.check_reproduction(plan, build)


def test_the_old_pruning_is_also_refused_by_the_structural_audit(int8_stateful_path, monkeypatch):
    from tests.helpers import compile_model

    path, features = int8_stateful_path
    monkeypatch.setattr(graph, "prune_ops", old_prune_ops)
    with pytest.raises(VerificationError, match="the base's CALL_ONCE op .* writes state but is missing"):
        compile_model(path, features, num_classes=3)


def test_the_check_passes_after_the_fix(int8_stateful_path):
    path, features = int8_stateful_path
    base = sources.load_base(sources.BaseOptions(base=path, base_output=features), lambda m: None)
    plan, build = passes_until(base, pipeline.audit_final_model)
    report = pipeline.check_reproduction(plan, build).reproduction
    assert report.stateful and report.batch == 1 and not report.copied_for_xnnpack
