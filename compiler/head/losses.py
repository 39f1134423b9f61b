"""Losses, a registry keyed by the CLI name (`--loss`). Each record gives what `infer` returns,
what `train` takes as `label`, its hyper-parameters (each with its one default, check and help:
the --flags come from them), and the loss with its gradient w.r.t. the logits.

Gradients are written out (not taken with tf.GradientTape) because the tape's gradient of
broadcasting ops needs `tf.BroadcastGradientArgs` with a dynamic batch, which is no TFLite
builtin. The reference in verify.py uses the tape, so the two are independent.

Adding a loss: one `LossRecord` in `LOSSES` (with its Keras reference) and its test.
TensorFlow-free at import (the CLI checks every flag before TensorFlow loads): the graph
functions and Keras references import it when they run.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.head import hyper_parameters
from tflite_transfer.compiler.head.hyper_parameters import IN_UNIT_INTERVAL, HyperParameter
from tflite_transfer.runtime import contract


@dataclasses.dataclass(frozen=True)
class LossRecord:
    """One loss: everything the compiler needs to know about it, in one place."""
    name: str                      # the --loss value
    description: str               # for --help
    labels_are_class_ids: bool     # int32 [batch] class ids, else float32 [batch, outputs] targets
    output_name: str               # `infer`'s output tensor (a contract name)
    min_outputs: int               # smallest --num_classes that makes sense
    outputs: Callable              # logits -> what `infer` returns
    loss_and_logits_grad: Callable  # (spec, logits, label) -> (loss, d loss / d logits)
    keras_reference: Callable      # spec -> the Keras loss on (targets, logits): verify.py's reference
    hyper_parameters: tuple[HyperParameter, ...] = ()


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A loss chosen from the registry, with the values of the hyper-parameters it reads."""
    record: LossRecord
    hyper_parameters: Mapping[str, bool | float] = dataclasses.field(default_factory=dict)
    label_format: str = "class_ids"     # classification losses: class ids or one-hot/soft float rows

    @property
    def name(self) -> str:
        return self.record.name

    def __getitem__(self, name: str) -> bool | float:
        return self.hyper_parameters[name]

    @property
    def label_smoothing(self) -> float:
        """The metadata's `label_smoothing` field (0 for losses without it)."""
        return float(self.hyper_parameters.get("label_smoothing", 0.0))

    @property
    def takes_class_ids(self) -> bool:
        """`train` takes int32 class ids [batch] (else float32 [batch, outputs])."""
        return self.labels_are_class_ids and self.label_format == "class_ids"

    @property
    def labels_are_class_ids(self) -> bool:
        return self.record.labels_are_class_ids

    @property
    def output_name(self) -> str:
        return self.record.output_name

    def label(self, num_outputs: int) -> contract.LabelSpec:
        """The contract's description of `label`, per sample."""
        return contract.LabelSpec.for_loss(self.labels_are_class_ids, num_outputs, self.label_format)

    def outputs(self, logits):
        """What `infer` returns for the logits."""
        return self.record.outputs(logits)

    def loss_and_logits_grad(self, logits, label):
        return self.record.loss_and_logits_grad(self, logits, label)

    def keras_reference(self):
        """The independent reference (a Keras loss taking one-hot or float targets and logits)."""
        return self.record.keras_reference(self)


def _softmax_cross_entropy(spec: LossSpec, logits, label):
    import tensorflow as tf  # noqa: PLC0415

    num_classes = logits.shape[-1]
    batch = tf.cast(tf.shape(logits)[0], tf.float32)
    # One-hot or soft rows (--label_format=one_hot) are the target as given: the gradient
    # softmax - target below is the cross-entropy's only for rows >= 0 summing to 1, which
    # every runtime checks before `train` sees them.
    target = tf.one_hot(label, num_classes, dtype=tf.float32) if spec.takes_class_ids else label
    if spec["label_smoothing"]:
        target = target * (1.0 - spec["label_smoothing"]) + spec["label_smoothing"] / num_classes
    log_probabilities = tf.nn.log_softmax(logits)
    loss = -tf.reduce_sum(target * log_probabilities) / batch
    return loss, (tf.exp(log_probabilities) - target) / batch


def _softmax(logits):
    import tensorflow as tf  # noqa: PLC0415
    return tf.nn.softmax(logits)


def _keras_cross_entropy(spec: LossSpec):
    import keras  # noqa: PLC0415
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=spec["label_smoothing"])


def _mean_squared_error(spec: LossSpec, logits, label):
    import tensorflow as tf  # noqa: PLC0415

    count = tf.cast(tf.size(logits), tf.float32)
    error = logits - label
    return tf.reduce_sum(tf.square(error)) / count, 2.0 * error / count


def _keras_mean_squared_error(spec: LossSpec):
    import keras  # noqa: PLC0415
    return keras.losses.MeanSquaredError()


LABEL_SMOOTHING = HyperParameter("label_smoothing", 0.0, "label smoothing of the one-hot targets",
                                 IN_UNIT_INTERVAL)

LOSSES: dict[str, LossRecord] = {record.name: record for record in (
    LossRecord("softmax_cross_entropy", "softmax + cross-entropy on int32 class ids or one-hot/soft "
               "float rows (--label_format); infer returns probabilities",
               labels_are_class_ids=True, output_name=contract.PROBABILITIES, min_outputs=2,
               outputs=_softmax, loss_and_logits_grad=_softmax_cross_entropy,
               keras_reference=_keras_cross_entropy, hyper_parameters=(LABEL_SMOOTHING,)),
    LossRecord("mse", "mean squared error on float32 targets [batch, num_classes]; infer "
               "returns predictions", labels_are_class_ids=False,
               output_name=contract.PREDICTIONS, min_outputs=1,
               outputs=lambda logits: logits, loss_and_logits_grad=_mean_squared_error,
               keras_reference=_keras_mean_squared_error),
)}


def help_text() -> str:
    return "; ".join(f"'{name}': {record.description}" + (f" ({hyper_parameters.describe(record)})"
                                                            if record.hyper_parameters else "")
                     for name, record in LOSSES.items())


def build_loss(name: str, label_format: str = "class_ids", **given: bool | float | None) -> LossSpec:
    """Checks the choice and the hyper-parameters `given` (None or absent: the record's
    default); a value for a hyper-parameter the loss does not read is refused. `label_format`
    (--label_format) is checked by compiler/interface.py."""
    record = LOSSES.get(name)
    if record is None:
        raise InvalidInputError(f"unknown --loss '{name}'; choose one of: {', '.join(LOSSES)}")
    return LossSpec(record, hyper_parameters.resolve(LOSSES, "loss", name, given), label_format)


def check_num_outputs(loss: LossSpec, num_outputs: int) -> None:
    if num_outputs < loss.record.min_outputs:
        raise InvalidInputError(f"--num_classes must be >= {loss.record.min_outputs}, got {num_outputs}")
