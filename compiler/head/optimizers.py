"""Optimizers as a registry keyed by the CLI name: one record per optimizer holds its slots,
its update (the TF graph of one step, converted to builtin TFLite ops) and its Keras reference
(what verify.py trains against). Adding an optimizer = one `Optimizer` record in `OPTIMIZERS`
plus its case in tests/compiler/head/test_training_graph.py.

Keras optimizers convert but their own variables are never initialised in TFLite (train
fails in READ_VARIABLE), so each update here follows Keras 3's `update_step` formula with
plain tf.Variable slots.

Speed (benchmarks/speed, issue 11): a kernel's update is memory-bound; every elementwise op
over a [units, inputs] tensor is a full pass over it. So an update receives the gradient in
factored form (`Gradient`): `gradient.times(c)` multiplies the small [batch, units] operand by
the scalar c before the one matmul that makes the [units, inputs] product, so learning rates
and betas cost no pass over the weights. The weights' current value comes in as the tensor the
forward pass already read (a READ_VARIABLE is a full copy), and each slot is read once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.runtime import contract


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """The chosen optimizer and its hyper-parameters (stored in the model's metadata)."""
    name: str
    learning_rate: float
    momentum: float = 0.0         # momentum
    nesterov: bool = False        # momentum
    beta_1: float = 0.9           # adam, adamw
    beta_2: float = 0.999         # adam, adamw
    epsilon: float = 1e-7         # adam, adamw (Keras' default)
    weight_decay: float = 0.0     # adamw

    @property
    def record(self) -> "Optimizer":
        return OPTIMIZERS[self.name]

    @property
    def slot_suffixes(self) -> tuple[str, ...]:
        """Per-variable state, stored as variables named '<variable>_<suffix>'."""
        return self.record.slots

    def keras_optimizer(self):
        """The Keras optimizer with the same hyper-parameters: the reference in verify.py."""
        return self.record.keras_reference(self)


@dataclasses.dataclass(frozen=True)
class UpdateInputs:
    """What one variable's update reads; `assign(variable_or_slot, value)` writes.

    value: the variable's current value (the tensor the forward pass read);
    gradient: its gradient, factored (see `Gradient`); slots: each slot's current value by
    suffix; learning_rate and step: scalar tensors (step = updates done before this one)."""
    value: object
    gradient: object
    slots: dict
    learning_rate: object
    step: object


# update(spec, inputs) -> (new value, {slot suffix: new slot value})
Update = Callable[[OptimizerSpec, UpdateInputs], tuple[object, dict]]


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """One registry record."""
    name: str                                   # the --optimizer value
    summary: str                                # one line for --help
    slots: tuple[str, ...]                      # per-variable state suffixes
    update: Update                              # the TF graph of one step
    keras_reference: Callable[[OptimizerSpec], object]   # the Keras optimizer verify.py uses
    hyper_parameters: tuple[str, ...] = ()      # OptimizerSpec fields it reads besides learning_rate


def _sgd_update(spec, inputs):
    # w - lr * g, with lr applied to the small operand: one product, one SUB.
    return inputs.value - inputs.gradient.times(inputs.learning_rate), {}


def _momentum_update(spec, inputs):
    # Keras: v = momentum * v - lr * g; w += v (nesterov: w += momentum * v - lr * g).
    minus_lr_gradient = inputs.gradient.times(-inputs.learning_rate)
    velocity = inputs.slots["momentum"] * spec.momentum + minus_lr_gradient
    if spec.nesterov:
        return inputs.value + (velocity * spec.momentum + minus_lr_gradient), {"momentum": velocity}
    return inputs.value + velocity, {"momentum": velocity}


def _adam_update(spec, inputs):
    """Keras 3 Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    w -= m * alpha / (sqrt(v) + eps), alpha = lr sqrt(1 - b2^t) / (1 - b1^t).
    Written as m = b1 (m + g (1 - b1) / b1) and v = b2 (v + (g sqrt((1 - b2) / b2))^2) so the
    betas ride on the small operand: two passes over m, three over v (equal to the Keras form
    to float32 rounding; verify.py checks it)."""
    import tensorflow as tf  # noqa: PLC0415

    value = inputs.value
    if spec.name == "adamw":  # Keras 3 AdamW: decoupled decay before the Adam step
        value = value * (1.0 - spec.weight_decay * inputs.learning_rate)
    local_step = inputs.step + 1.0
    alpha = (inputs.learning_rate * tf.sqrt(1.0 - tf.pow(spec.beta_2, local_step))
             / (1.0 - tf.pow(spec.beta_1, local_step)))
    m, v, gradient = inputs.slots["m"], inputs.slots["v"], inputs.gradient
    if spec.beta_1 > 0:
        m_new = (m + gradient.times((1.0 - spec.beta_1) / spec.beta_1)) * spec.beta_1
    else:
        m_new = gradient.times(1.0)
    if spec.beta_2 > 0:
        scaled = gradient.times(math.sqrt((1.0 - spec.beta_2) / spec.beta_2))
        v_new = (v + tf.square(scaled)) * spec.beta_2
    else:
        v_new = tf.square(gradient.times(1.0))
    step_size = m_new / (tf.sqrt(v_new) + spec.epsilon)
    return value - step_size * alpha, {"m": m_new, "v": v_new}


def _keras_sgd(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.SGD(spec.learning_rate)


def _keras_momentum(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.SGD(spec.learning_rate, momentum=spec.momentum, nesterov=spec.nesterov)


def _keras_adam(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.Adam(spec.learning_rate, spec.beta_1, spec.beta_2, spec.epsilon)


def _keras_adamw(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.AdamW(spec.learning_rate, weight_decay=spec.weight_decay,
                                  beta_1=spec.beta_1, beta_2=spec.beta_2, epsilon=spec.epsilon)


OPTIMIZERS: dict[str, Optimizer] = {record.name: record for record in (
    Optimizer("sgd", "plain stochastic gradient descent", (), _sgd_update, _keras_sgd),
    Optimizer("momentum", "SGD with momentum (--momentum, --nesterov)", ("momentum",), _momentum_update,
              _keras_momentum, ("momentum", "nesterov")),
    Optimizer("adam", "Adam (--beta_1, --beta_2, --epsilon)", ("m", "v"), _adam_update, _keras_adam,
              ("beta_1", "beta_2", "epsilon")),
    Optimizer("adamw", "Adam with decoupled weight decay (--weight_decay)", ("m", "v"), _adam_update,
              _keras_adamw, ("beta_1", "beta_2", "epsilon", "weight_decay")),
)}


def describe() -> str:
    """'sgd (plain ...), momentum (...), ...': what --help and errors list."""
    return ", ".join(f"'{name}' ({record.summary})" for name, record in OPTIMIZERS.items())





def build_optimizer(name: str, learning_rate: float, momentum: float = 0.9, nesterov: bool = False,
                    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                    weight_decay: float = 0.004) -> OptimizerSpec:
    """Validates the flags and returns the spec; hyper-parameters the optimizer does not read
    are stored at their neutral values."""
    if name not in OPTIMIZERS:
        raise InvalidInputError(f"unknown --optimizer '{name}'; choose one of: {', '.join(OPTIMIZERS)}")
    # The learning rate lives in a float32 variable: above float32's largest value it becomes
    # inf and the first step turns every weight into NaN.
    if not (learning_rate > 0 and math.isfinite(learning_rate)) or learning_rate > contract.MAX_LEARNING_RATE:
        raise InvalidInputError(f"--learning_rate must be > 0, finite and <= {contract.MAX_LEARNING_RATE:g} "
                                f"(the bound every runtime enforces), got {learning_rate}")
    if not 0.0 <= momentum < 1.0:
        raise InvalidInputError(f"--momentum must be in [0, 1), got {momentum}")
    for flag, value in (("beta_1", beta_1), ("beta_2", beta_2)):
        if not 0.0 <= value < 1.0:
            raise InvalidInputError(f"--{flag} must be in [0, 1), got {value}")
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise InvalidInputError(f"--epsilon must be a finite number > 0, got {epsilon}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise InvalidInputError(f"--weight_decay must be a finite number >= 0, got {weight_decay}")
    reads = OPTIMIZERS[name].hyper_parameters
    return OptimizerSpec(
        name, learning_rate,
        momentum=momentum if "momentum" in reads else 0.0,
        nesterov=nesterov if "nesterov" in reads else False,
        beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
        weight_decay=weight_decay if "weight_decay" in reads else 0.0)
