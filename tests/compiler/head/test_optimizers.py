"""compiler/head/optimizers.py: every registered optimizer's `train` step against its Keras 3
reference (verify.py: TF eager, tf.GradientTape, the Keras optimizer; relative weight
difference over all weights <= 1e-5), and its hyper-parameters' defaults and checks.

Adding an optimizer = its record in optimizers.OPTIMIZERS and its cases here: a parity case
giving each of its hyper-parameters a non-default value, and its refused values.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers import check_train_matches_keras, compile_model
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.head import optimizers
from tflite_transfer.compiler.options import HeadOptions

PARITY_CASES = [
    dict(optimizer="sgd", learning_rate=0.1),
    dict(optimizer="momentum", learning_rate=0.05, momentum=0.8),
    dict(optimizer="momentum", learning_rate=0.05, momentum=0.9, nesterov=True),
    dict(optimizer="adam", learning_rate=0.01),
    dict(optimizer="adam", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
    dict(optimizer="adamw", learning_rate=0.01, weight_decay=0.05),
    dict(optimizer="adamw", learning_rate=0.01, weight_decay=0.01, beta_1=0.85, beta_2=0.995, epsilon=1e-5),
    dict(optimizer="rmsprop", learning_rate=0.01),
    dict(optimizer="rmsprop", learning_rate=0.005, momentum=0.9),
    dict(optimizer="rmsprop", learning_rate=0.01, rho=0.8, momentum=0.5, epsilon=1e-4, centered=True),
]

REFUSED = [
    (dict(name="no_such_optimizer", learning_rate=0.1), "unknown --optimizer 'no_such_optimizer'; choose one of"),
    (dict(name="sgd", learning_rate=-0.1), "--learning_rate must be > 0"),
    (dict(name="sgd", learning_rate=0.0), "--learning_rate must be > 0"),
    (dict(name="sgd", learning_rate=float("inf")), "--learning_rate must be > 0, finite"),
    (dict(name="sgd", learning_rate=float("nan")), "--learning_rate must be > 0, finite"),
    (dict(name="sgd", learning_rate=1e39), "<= 1e\\+06"),
    (dict(name="sgd", learning_rate="0.1"), "--learning_rate must be > 0"),
    (dict(name="sgd", learning_rate=0.1, momentum=0.5), "--momentum applies to momentum.* only, not --optimizer=sgd"),
    (dict(name="sgd", learning_rate=0.1, rho_typo=0.5), "no --optimizer reads a hyper-parameter named 'rho_typo'"),
    (dict(name="momentum", learning_rate=0.1, momentum=1.0), "--momentum must be in \\[0, 1\\) for --optimizer=momentum"),
    (dict(name="momentum", learning_rate=0.1, nesterov=1), "--nesterov must be true or false"),
    (dict(name="adam", learning_rate=0.1, beta_2=1.5), "--beta_2 must be in \\[0, 1\\)"),
    (dict(name="adam", learning_rate=0.1, beta_1=float("nan")), "--beta_1 must be in \\[0, 1\\)"),
    (dict(name="adam", learning_rate=0.1, epsilon=float("inf")), "--epsilon must be a finite number > 0"),
    (dict(name="adam", learning_rate=0.1, epsilon=0.0), "--epsilon must be a finite number > 0"),
    (dict(name="adamw", learning_rate=0.1, weight_decay=float("nan")), "--weight_decay must be a finite number >= 0"),
    (dict(name="adamw", learning_rate=0.1, weight_decay="a lot"), "--weight_decay must be a number"),
    (dict(name="rmsprop", learning_rate=0.1, rho=1.0), "--rho must be in \\[0, 1\\) for --optimizer=rmsprop"),
    (dict(name="rmsprop", learning_rate=0.1, momentum=-0.1), "--momentum must be in \\[0, 1\\) for --optimizer=rmsprop"),
    (dict(name="rmsprop", learning_rate=0.1, epsilon=-1.0), "--epsilon must be a finite number > 0"),
    (dict(name="rmsprop", learning_rate=0.1, centered="yes"), "--centered must be true or false"),
    (dict(name="adam", learning_rate=0.1, rho=0.9), "--rho applies to rmsprop only, not --optimizer=adam"),
]


def test_rmsprop_defaults_and_slots_are_keras():
    """Keras 3 RMSprop's defaults (rho 0.9, momentum 0, epsilon 1e-7, not centered); its
    momentum and average-gradient slots exist only when used, as in Keras."""
    import inspect

    spec = optimizers.build_optimizer("rmsprop", 0.001)
    keras_defaults = inspect.signature(keras.optimizers.RMSprop).parameters
    for name in ("rho", "momentum", "epsilon", "centered"):
        assert spec[name] == keras_defaults[name].default, name
    assert spec.slot_suffixes == ("velocity",)
    assert optimizers.build_optimizer("rmsprop", 0.001, momentum=0.5, centered=True).slot_suffixes == \
        ("velocity", "momentum", "average_gradient")


@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_train_steps_match_keras(tiny_classifier_path, tiny_pool_name, case):
    result = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, **case)
    slots = {entry.slot for entry in result.metadata.state if entry.slot}
    assert slots == set(result.head.optimizer.slot_suffixes)
    # As many slots per weight as the Keras optimizer makes (besides its iteration and learning rate).
    weights = [keras.Variable(np.zeros(entry.shape, np.float32)) for entry in result.metadata.state
               if entry.role in ("kernel", "bias")]
    reference = result.head.optimizer.keras_optimizer()
    reference.build(weights)
    assert len(reference.variables) - 2 == len(slots) * len(weights), [v.path for v in reference.variables]
    check_train_matches_keras(result, case["learning_rate"], tolerance=1e-5)


def test_every_optimizer_and_hyper_parameter_has_a_parity_case():
    """Each record is checked against Keras, each of its hyper-parameters at a non-default value."""
    assert set(optimizers.OPTIMIZERS) == {case["optimizer"] for case in PARITY_CASES}
    for name, record in optimizers.OPTIMIZERS.items():
        assert record.name == name and record.summary in optimizers.describe()
        for parameter in record.hyper_parameters:
            assert any(case["optimizer"] == name and case.get(parameter.name, parameter.default) != parameter.default
                       for case in PARITY_CASES), f"{name}: no parity case sets --{parameter.name}"


@pytest.mark.parametrize("kwargs,message", REFUSED, ids=lambda v: str(v)[:60])
def test_refused_values(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        optimizers.build_optimizer(**kwargs)


def test_defaults_come_from_each_record():
    """An unset hyper-parameter takes the chosen record's own default; HeadOptions has one
    field per hyper-parameter name, None when not given."""
    for name, record in optimizers.OPTIMIZERS.items():
        spec = optimizers.build_optimizer(name, 0.01, **{p.name: None for p in record.hyper_parameters})
        assert dict(spec.hyper_parameters) == {p.name: p.default for p in record.hyper_parameters}
        for parameter in record.hyper_parameters:
            assert getattr(HeadOptions(), parameter.name) is None
    assert optimizers.build_optimizer("momentum", 0.01, momentum=0.5)["momentum"] == 0.5


def test_the_metadata_record_round_trips():
    for case in PARITY_CASES:
        hyper = {k: v for k, v in case.items() if k not in ("optimizer", "learning_rate")}
        spec = optimizers.build_optimizer(case["optimizer"], case["learning_rate"], **hyper)
        record = spec.to_record()
        assert record == {"name": spec.name, "learning_rate": spec.learning_rate, **spec.hyper_parameters}
        assert optimizers.OptimizerSpec.from_record(record) == spec
    # Compilers before 2026-12 stored every optimizer's values, the unread ones neutral.
    old = {"name": "adam", "learning_rate": 0.01, "momentum": 0.0, "nesterov": False, "beta_1": 0.9,
           "beta_2": 0.999, "epsilon": 1e-07, "weight_decay": 0.0}
    assert optimizers.OptimizerSpec.from_record(old) == optimizers.build_optimizer("adam", 0.01)
