"""Optimizers, chosen by the CLI name, written with plain tf.Variable slots.

Keras optimizers convert but their own variables are never initialised in TFLite (train
fails in READ_VARIABLE), so each update here follows Keras 3's `update_step` formula
exactly; verify.py checks them against the real Keras optimizers.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from tflite_transfer.compiler.errors import InvalidInputError


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    name: str
    learning_rate: float
    momentum: float = 0.0         # momentum
    nesterov: bool = False        # momentum
    beta_1: float = 0.9           # adam, adamw
    beta_2: float = 0.999         # adam, adamw
    epsilon: float = 1e-7         # adam, adamw (Keras' default)
    weight_decay: float = 0.0     # adamw

    @property
    def slot_suffixes(self) -> tuple[str, ...]:
        """Per-variable state, stored as variables named '<variable>_<suffix>'."""
        return {"sgd": (), "momentum": ("momentum",), "adam": ("m", "v"), "adamw": ("m", "v")}[self.name]

    def apply(self, variable: tf.Variable, gradient: tf.Tensor, slots: dict[str, tf.Variable],
              learning_rate: tf.Tensor, step: tf.Tensor) -> None:
        """One update of `variable`; `step` is the float count of updates before this one."""
        if self.name == "sgd":
            variable.assign_sub(learning_rate * gradient)
        elif self.name == "momentum":
            velocity = slots["momentum"]
            velocity.assign(velocity * self.momentum - learning_rate * gradient)
            if self.nesterov:
                variable.assign_add(velocity * self.momentum - learning_rate * gradient)
            else:
                variable.assign_add(velocity)
        else:  # adam, adamw
            if self.name == "adamw":
                variable.assign(variable - variable * self.weight_decay * learning_rate)
            local_step = step + 1.0
            alpha = (learning_rate * tf.sqrt(1.0 - tf.pow(self.beta_2, local_step))
                     / (1.0 - tf.pow(self.beta_1, local_step)))
            m, v = slots["m"], slots["v"]
            m.assign_add((gradient - m) * (1.0 - self.beta_1))
            v.assign_add((tf.square(gradient) - v) * (1.0 - self.beta_2))
            variable.assign_sub((m * alpha) / (tf.sqrt(v) + self.epsilon))

    def keras_optimizer(self):
        """The Keras optimizer with the same hyper-parameters: the reference in verify.py."""
        import keras  # noqa: PLC0415

        if self.name == "sgd":
            return keras.optimizers.SGD(self.learning_rate)
        if self.name == "momentum":
            return keras.optimizers.SGD(self.learning_rate, momentum=self.momentum,
                                        nesterov=self.nesterov)
        if self.name == "adam":
            return keras.optimizers.Adam(self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
        return keras.optimizers.AdamW(self.learning_rate, weight_decay=self.weight_decay,
                                      beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)


FLOAT32_MAX = 3.4028234663852886e38
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


def build_optimizer(name: str, learning_rate: float, momentum: float = 0.9, nesterov: bool = False,
                    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                    weight_decay: float = 0.004) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise InvalidInputError(f"unknown --optimizer '{name}'; choose one of: {', '.join(OPTIMIZERS)}")
    # The learning rate lives in a float32 variable: above float32's largest value it becomes
    # inf and the first step turns every weight into NaN.
    if not (learning_rate > 0 and math.isfinite(learning_rate)) or learning_rate > FLOAT32_MAX:
        raise InvalidInputError(f"--learning_rate must be > 0 and finite in float32 (at most "
                                f"{FLOAT32_MAX:.3g}), got {learning_rate}")
    if not 0.0 <= momentum < 1.0:
        raise InvalidInputError(f"--momentum must be in [0, 1), got {momentum}")
    for flag, value in (("beta_1", beta_1), ("beta_2", beta_2)):
        if not 0.0 <= value < 1.0:
            raise InvalidInputError(f"--{flag} must be in [0, 1), got {value}")
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise InvalidInputError(f"--epsilon must be a finite number > 0, got {epsilon}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise InvalidInputError(f"--weight_decay must be a finite number >= 0, got {weight_decay}")
    return OptimizerSpec(
        name, learning_rate,
        momentum=momentum if name == "momentum" else 0.0,
        nesterov=nesterov if name == "momentum" else False,
        beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
        weight_decay=weight_decay if name == "adamw" else 0.0)
