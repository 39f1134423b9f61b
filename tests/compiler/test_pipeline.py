"""compiler/pipeline.py: the plan is validated once from the options; the passes run in order."""

from __future__ import annotations

import dataclasses

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
    (HeadOptions(optimizer="rmsprop"), "unknown --optimizer 'rmsprop'"),
    (HeadOptions(head="conv"), "unknown --head 'conv'; choose one of: softmax, mlp:H1[,H2,...], keras:FILE"),
    (HeadOptions(learning_rate=0.0), "--learning_rate must be > 0"),
])
def test_bad_options_are_refused_once_before_any_work(options, message):
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pipeline.make_plan(options)


def test_a_loss_on_targets_takes_one_output():
    plan = pipeline.make_plan(HeadOptions(loss="mse", num_classes=1))
    assert plan.num_classes == 1 and not plan.loss.labels_are_class_ids


def test_options_and_plan_are_frozen_and_keyword_only():
    with pytest.raises(TypeError):
        HeadOptions("softmax")  # the positional form is what kw_only forbids
    plan = pipeline.make_plan(HeadOptions())
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.num_classes = 5  # type: ignore[misc]


def test_passes_change_the_model_before_the_bytes_and_only_check_after():
    names = [step.run.__name__ for step in pipeline.PASSES]
    assert names.index("serialize") < names.index("audit_final_model") < names.index("run_every_signature")
    assert names.index("lower_op_versions") < names.index("serialize")
    assert names[-1] == "verify_training"
