"""Optimizers as a registry keyed by the CLI name: one record per optimizer holds its
hyper-parameters (each with its one default, its check and its help: the --flags and
`HeadOptions` fields come from them), its slots, its update (the TF graph of one step,
converted to builtin TFLite ops) and its Keras reference (what verify.py trains against).
Adding an optimizer = one `Optimizer` record in `OPTIMIZERS` plus its cases in
tests/compiler/head/test_optimizers.py.

Keras optimizers convert but their own variables are never initialised in TFLite (train
fails in READ_VARIABLE), so each update here follows Keras 3's `update_step` formula with
plain tf.Variable slots.

Speed (benchmarks/speed): a kernel's update is memory-bound; every elementwise op over a
[units, inputs] tensor is a full pass over it. So an update receives the gradient in factored
form (`Gradient`): `gradient.times(c)` multiplies the small [batch, units] operand by the scalar
c before the one matmul that makes the [units, inputs] product, so learning rates and betas
cost no pass over the weights. The weights' current value comes in as the tensor the forward
pass already read (a READ_VARIABLE is a full copy), and each slot is read once.

TensorFlow-free at import (the CLI checks every flag before TensorFlow loads): updates and
Keras references import it when they run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.head.hyper_parameters import (IN_UNIT_INTERVAL, NON_NEGATIVE_FINITE, POSITIVE_FINITE,
                                                            HyperParameter)
from tflite_transfer.compiler.head import hyper_parameters
from tflite_transfer.runtime import contract


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """The chosen optimizer and the values of the hyper-parameters its record reads (stored in
    the model's metadata as one flat record, `to_record`)."""
    name: str
    learning_rate: float
    hyper_parameters: Mapping[str, bool | float] = dataclasses.field(default_factory=dict)

    @property
    def record(self) -> "Optimizer":
        return OPTIMIZERS[self.name]

    def __getitem__(self, name: str) -> bool | float:
        """A hyper-parameter's value: spec['momentum']."""
        return self.hyper_parameters[name]

    @property
    def slot_suffixes(self) -> tuple[str, ...]:
        """Per-variable state, stored as variables named '<variable>_<suffix>'."""
        return self.record.slots(self)

    def keras_optimizer(self):
        """The Keras optimizer with the same hyper-parameters: the reference in verify.py."""
        return self.record.keras_reference(self)

    def to_record(self) -> dict:
        """{'name', 'learning_rate', every hyper-parameter}: the metadata's `optimizer`."""
        return {"name": self.name, "learning_rate": self.learning_rate, **self.hyper_parameters}

    @classmethod
    def from_record(cls, record: Mapping) -> "OptimizerSpec":
        """The spec of a metadata `optimizer` record (values its optimizer does not read, which
        compilers before 2026-12 stored at neutral values, are left out)."""
        reads = {parameter.name for parameter in OPTIMIZERS[record["name"]].hyper_parameters} \
            if record.get("name") in OPTIMIZERS else set()
        return build_optimizer(record["name"], record["learning_rate"],
                               **{name: value for name, value in record.items() if name in reads})


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
    slots: Callable[[OptimizerSpec], tuple[str, ...]]   # per-variable state suffixes for these values
    update: Update                              # the TF graph of one step
    keras_reference: Callable[[OptimizerSpec], object]   # the Keras optimizer verify.py uses
    hyper_parameters: tuple[HyperParameter, ...] = ()    # what it reads besides the learning rate


def always(*slots: str) -> Callable[[OptimizerSpec], tuple[str, ...]]:
    """Slots that do not depend on the hyper-parameters' values."""
    return lambda spec: slots


# Hyper-parameters several records read (each record may also define its own).
MOMENTUM = HyperParameter("momentum", 0.9, "momentum: the decay of the velocity", IN_UNIT_INTERVAL)
NESTEROV = HyperParameter("nesterov", False, "Nesterov momentum")
BETA_1 = HyperParameter("beta_1", 0.9, "decay of the first-moment average", IN_UNIT_INTERVAL)
BETA_2 = HyperParameter("beta_2", 0.999, "decay of the second-moment average", IN_UNIT_INTERVAL)
EPSILON = HyperParameter("epsilon", 1e-7, "added to the denominator for stability", POSITIVE_FINITE)
WEIGHT_DECAY = HyperParameter("weight_decay", 0.004, "decoupled weight decay", NON_NEGATIVE_FINITE)


def _sgd_update(spec, inputs):
    # w - lr * g, with lr applied to the small operand: one product, one SUB.
    return inputs.value - inputs.gradient.times(inputs.learning_rate), {}


def _momentum_update(spec, inputs):
    # Keras: v = momentum * v - lr * g; w += v (nesterov: w += momentum * v - lr * g).
    minus_lr_gradient = inputs.gradient.times(-inputs.learning_rate)
    velocity = inputs.slots["momentum"] * spec["momentum"] + minus_lr_gradient
    if spec["nesterov"]:
        return inputs.value + (velocity * spec["momentum"] + minus_lr_gradient), {"momentum": velocity}
    return inputs.value + velocity, {"momentum": velocity}


def _adam_update(spec, inputs, value=None):
    """Keras 3 Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    w -= m * alpha / (sqrt(v) + eps), alpha = lr sqrt(1 - b2^t) / (1 - b1^t).
    Written as m = b1 (m + g (1 - b1) / b1) and v = b2 (v + (g sqrt((1 - b2) / b2))^2) so the
    betas ride on the small operand: two passes over m, three over v (equal to the Keras form
    to float32 rounding; verify.py checks it). `value`: the weights to step from (AdamW's)."""
    import tensorflow as tf  # noqa: PLC0415

    value = inputs.value if value is None else value
    beta_1, beta_2 = spec["beta_1"], spec["beta_2"]
    local_step = inputs.step + 1.0
    alpha = (inputs.learning_rate * tf.sqrt(1.0 - tf.pow(beta_2, local_step))
             / (1.0 - tf.pow(beta_1, local_step)))
    m, v, gradient = inputs.slots["m"], inputs.slots["v"], inputs.gradient
    if beta_1 > 0:
        m_new = (m + gradient.times((1.0 - beta_1) / beta_1)) * beta_1
    else:
        m_new = gradient.times(1.0)
    if beta_2 > 0:
        scaled = gradient.times(math.sqrt((1.0 - beta_2) / beta_2))
        v_new = (v + tf.square(scaled)) * beta_2
    else:
        v_new = tf.square(gradient.times(1.0))
    step_size = m_new / (tf.sqrt(v_new) + spec["epsilon"])
    return value - step_size * alpha, {"m": m_new, "v": v_new}


def _adamw_update(spec, inputs):
    """Keras 3 AdamW: decoupled decay of the weights, then the Adam step from them."""
    return _adam_update(spec, inputs, inputs.value * (1.0 - spec["weight_decay"] * inputs.learning_rate))


def _rmsprop_update(spec, inputs):
    """Keras 3 RMSprop: v = rho v + (1 - rho) g^2; centered: a = rho a + (1 - rho) g and the
    denominator is v - a^2; increment = lr g / sqrt(denominator + eps); with momentum:
    s = momentum s + increment, w -= s; else w -= increment.
    sqrt(1 - rho), 1 - rho and lr ride on the small operand (each one product); each slot is
    read once and every other op is one pass (equal to the Keras form to float32 rounding;
    verify.py checks it)."""
    import tensorflow as tf  # noqa: PLC0415

    rho, gradient, slots = spec["rho"], inputs.gradient, inputs.slots
    velocity = slots["velocity"] * rho + tf.square(gradient.times(math.sqrt(1.0 - rho)))
    new_slots, denominator = {"velocity": velocity}, velocity
    if spec["centered"]:
        average = slots["average_gradient"] * rho + gradient.times(1.0 - rho)
        new_slots["average_gradient"], denominator = average, velocity - tf.square(average)
    increment = gradient.times(inputs.learning_rate) / tf.sqrt(denominator + spec["epsilon"])
    if spec["momentum"] > 0:
        new_slots["momentum"] = slots["momentum"] * spec["momentum"] + increment
        return inputs.value - new_slots["momentum"], new_slots
    return inputs.value - increment, new_slots


def _rmsprop_slots(spec):
    """Keras' RMSprop keeps a momentum slot only with momentum > 0, an average gradient only centered."""
    return ("velocity", *(("momentum",) if spec["momentum"] > 0 else ()),
            *(("average_gradient",) if spec["centered"] else ()))


def _keras_rmsprop(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.RMSprop(spec.learning_rate, rho=spec["rho"], momentum=spec["momentum"],
                                    epsilon=spec["epsilon"], centered=spec["centered"])


def _keras_sgd(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.SGD(spec.learning_rate)


def _keras_momentum(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.SGD(spec.learning_rate, momentum=spec["momentum"], nesterov=spec["nesterov"])


def _keras_adam(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.Adam(spec.learning_rate, spec["beta_1"], spec["beta_2"], spec["epsilon"])


def _keras_adamw(spec):
    import keras  # noqa: PLC0415
    return keras.optimizers.AdamW(spec.learning_rate, weight_decay=spec["weight_decay"],
                                  beta_1=spec["beta_1"], beta_2=spec["beta_2"], epsilon=spec["epsilon"])


OPTIMIZERS: dict[str, Optimizer] = {record.name: record for record in (
    Optimizer("sgd", "plain stochastic gradient descent", always(), _sgd_update, _keras_sgd),
    Optimizer("momentum", "SGD with momentum", always("momentum"), _momentum_update, _keras_momentum,
              (MOMENTUM, NESTEROV)),
    Optimizer("adam", "Adam", always("m", "v"), _adam_update, _keras_adam, (BETA_1, BETA_2, EPSILON)),
    Optimizer("adamw", "Adam with decoupled weight decay", always("m", "v"), _adamw_update, _keras_adamw,
              (BETA_1, BETA_2, EPSILON, WEIGHT_DECAY)),
    Optimizer("rmsprop", "RMSprop", _rmsprop_slots, _rmsprop_update, _keras_rmsprop, (
        HyperParameter("rho", 0.9, "decay of the squared-gradient average", IN_UNIT_INTERVAL),
        dataclasses.replace(MOMENTUM, default=0.0),
        EPSILON,
        HyperParameter("centered", False, "centered RMSprop (divides by the gradient's variance estimate)"))),
)}


def describe() -> str:
    """"'sgd' (plain ...), 'momentum' (..., reads --momentum, --nesterov), ...": what --help lists."""
    return ", ".join(f"'{name}' ({', '.join(filter(None, (record.summary, hyper_parameters.describe(record))))})"
                     for name, record in OPTIMIZERS.items())


def build_optimizer(name: str, learning_rate: float, **given: bool | float | None) -> OptimizerSpec:
    """Checks the choice, the learning rate and the hyper-parameters `given` (None or absent:
    the record's default) and returns the spec. A value for a hyper-parameter the optimizer
    does not read is refused."""
    if name not in OPTIMIZERS:
        raise InvalidInputError(f"unknown --optimizer '{name}'; choose one of: {', '.join(OPTIMIZERS)}")
    # The learning rate lives in a float32 variable: above float32's largest value it becomes
    # inf and the first step turns every weight into NaN.
    if (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
            or not (learning_rate > 0 and math.isfinite(learning_rate))
            or learning_rate > contract.MAX_LEARNING_RATE):
        raise InvalidInputError(f"--learning_rate must be > 0, finite and <= {contract.MAX_LEARNING_RATE:g} "
                                f"(the bound every runtime enforces), got {learning_rate}")
    values = hyper_parameters.resolve(OPTIMIZERS, "optimizer", name, given)
    return OptimizerSpec(name, float(learning_rate), values)
