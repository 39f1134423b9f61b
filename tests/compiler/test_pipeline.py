"""compiler/pipeline.py: the plan is validated once from the options; the passes run in order."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tflite_transfer.compiler.head import losses
from tflite_transfer.compiler import pipeline
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.options import DEFAULT_NUM_CLASSES, HeadOptions


def test_num_classes_defaults_to_the_labels_else_the_default():
    assert pipeline.make_plan(HeadOptions()).num_classes == DEFAULT_NUM_CLASSES
    assert pipeline.make_plan(HeadOptions(labels=("a", "b", "c"))).num_classes == 3


@pytest.mark.parametrize("options,message", [
    (HeadOptions(num_classes=1), "--num_classes must be >= 2, got 1"),
    (HeadOptions(num_classes=2, labels=("a", "b", "c")), "3 labels given for --num_classes=2"),
    (HeadOptions(loss="hinge"), "unknown --loss 'hinge'; choose one of: " + ", ".join(losses.LOSSES)),
    (HeadOptions(loss="mse", label_smoothing=0.1), "--label_smoothing applies to softmax_cross_entropy only"),
    (HeadOptions(optimizer="no_such_optimizer"), "unknown --optimizer 'no_such_optimizer'"),
    (HeadOptions(optimizer="adam", momentum=0.5), "only, not --optimizer=adam"),
    (HeadOptions(head="mlp:abc"), "--head=mlp:abc: expected hidden layer sizes"),
    (HeadOptions(head="softmax:3"), "--head=softmax takes no argument"),
    (HeadOptions(head="keras:/nonexistent/head.keras"), "'/nonexistent/head.keras' not found"),
    (HeadOptions(seed=-1), "--seed must be an integer in [0, 4294967295], got -1"),
    (HeadOptions(seed=2**32), "--seed must be an integer in [0, 4294967295], got 4294967296"),
    (HeadOptions(seed=1.5), "--seed must be an integer"),
    (HeadOptions(labels=("a", "b", "a")), "class name 'a' is given twice (classes 0 and 2)"),
    (HeadOptions(labels=("a", " ")), "labels: class 1 is ' '"),
    (HeadOptions(labels=("a", "b\nc")), "labels: class 1 is 'b\\nc'; a class name is a non-empty line"),
    (HeadOptions(labels="abc"), "not one string"),
    (HeadOptions(num_classes=2.5), "--num_classes must be an integer"),
    (HeadOptions(head="conv"), "unknown --head 'conv'; choose one of: softmax, mlp:H1[,H2,...], keras:FILE"),
    (HeadOptions(learning_rate=0.0), "--learning_rate must be > 0"),
])
def test_bad_options_are_refused_once_before_any_work(options, message):
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        pipeline.make_plan(options)


def test_the_plan_is_made_without_tensorflow():
    """make_plan and every registry record import and check without TensorFlow, so the CLI
    answers a bad flag before spending seconds importing it (the in-process half of
    tests/compiler/cli/test_cli.py::test_bad_flags_answer_before_tensorflow_is_imported)."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from tflite_transfer.compiler import plan\n"
              "from tflite_transfer.compiler.cli import main\n"
              "from tflite_transfer.compiler.errors import InvalidInputError\n"
              "from tflite_transfer.compiler.options import HeadOptions\n"
              "made = plan.make_plan(HeadOptions(head='mlp:8', optimizer='adam', label_smoothing=0.1))\n"
              "try:\n"
              "    plan.make_plan(HeadOptions(head='mlp:abc'))\n"
              "except InvalidInputError:\n"
              "    pass\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n")
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"


def test_a_loss_on_targets_takes_one_output():
    plan = pipeline.make_plan(HeadOptions(loss="mse", num_classes=1))
    assert plan.num_classes == 1 and not plan.loss.labels_are_class_ids


def test_plan_uses_each_record_default_for_unset_hyper_parameters():
    plan = pipeline.make_plan(HeadOptions(optimizer="adamw", loss="softmax_cross_entropy"))
    record = plan.optimizer.record
    assert dict(plan.optimizer.hyper_parameters) == {p.name: p.default for p in record.hyper_parameters}
    assert plan.loss.label_smoothing == 0.0
    assert pipeline.make_plan(HeadOptions(label_smoothing=0.25)).loss.label_smoothing == 0.25


def test_options_and_plan_are_frozen_and_keyword_only():
    with pytest.raises(TypeError):
        HeadOptions("softmax")  # the positional form is what kw_only forbids
    with pytest.raises(TypeError):
        HeadOptions(no_such_option=1)
    plan = pipeline.make_plan(HeadOptions())
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.num_classes = 5  # type: ignore[misc]


def test_passes_change_the_model_before_the_bytes_and_only_check_after():
    names = [step.run.__name__ for step in pipeline.PASSES]
    assert names.index("serialize") < names.index("audit_final_model") < names.index("run_every_signature")
    assert names.index("lower_op_versions") < names.index("serialize")
    assert names[-1] == "verify_training"


@pytest.fixture(scope="module")
def tiny_base(tiny_classifier_path, tiny_pool_name):
    from tflite_transfer.compiler.base import sources

    return sources.load_base(sources.BaseOptions(base=tiny_classifier_path, base_output=tiny_pool_name),
                             lambda m: None)


def test_structural_checks_run_after_every_pass(tiny_base):
    """tests/pass_checks.py after each pass on the tiny base: what applies, as soon as it applies."""
    from tests.pass_checks import PassChecks

    checks = PassChecks(tiny_base)
    pipeline.compile_from_base(tiny_base, HeadOptions(num_classes=3, optimizer="adam", learning_rate=0.01),
                               verify_steps=2, progress=lambda m: None, after_pass=checks)
    assert list(checks.checked) == [step.name for step in pipeline.PASSES]
    by_function = {step.run.__name__: checks.checked[step.name] for step in pipeline.PASSES}
    assert by_function["prepare_base"] == ["cut base: op audit", "cut base: base preserved"]
    assert "head: signature contract" in by_function["build_head"]
    names = [step.run.__name__ for step in pipeline.PASSES]
    fused = names[names.index("fuse_model"):]
    for name in fused:
        assert {"op audit", "signature contract", "base preserved"} <= set(by_function[name]), name
    for name in fused[fused.index("serialize"):]:
        assert {"metadata written once", "model digest"} <= set(by_function[name]), name


def _rename_load(plan, build):
    build.fused.model.signatureDefs[1].signatureKey = b"loader"
    return build


def _damage_a_base_weight(plan, build):
    from tflite_transfer.compiler.flatbuffer import model_io

    model = build.fused.model
    index = next(i for i in sorted(build.fused.base_buffers.values()) if model_io.buffer_bytes(model, i))
    data = bytearray(model_io.buffer_bytes(model, index))
    data[0] ^= 0x01
    model.buffers[index] = model_io.make_buffer(bytes(data))
    return build


@pytest.mark.parametrize("breaking,message", [
    (_rename_load, "differ from the contract"),
    (_damage_a_base_weight, "differs from the original"),
])
def test_a_pass_that_breaks_the_model_is_caught_after_that_pass(tiny_base, monkeypatch, breaking, message):
    from tests.pass_checks import PassChecks
    from tflite_transfer.compiler.errors import VerificationError

    names = [step.run.__name__ for step in pipeline.PASSES]
    passes = list(pipeline.PASSES)
    passes.insert(names.index("fuse_model") + 1, pipeline.Pass("a breaking pass", breaking))
    monkeypatch.setattr(pipeline, "PASSES", tuple(passes))
    checks = PassChecks(tiny_base)
    with pytest.raises(VerificationError, match=f"after the pass 'a breaking pass': .*{message}"):
        pipeline.compile_from_base(tiny_base, HeadOptions(num_classes=3), verify_steps=0,
                                   progress=lambda m: None, after_pass=checks)
    assert list(checks.checked) == [step.name for step in passes[:names.index("fuse_model") + 1]]
