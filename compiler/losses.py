"""Losses, chosen by the CLI name. Each gives the loss and its gradient w.r.t. the logits.

Gradients are written out (not taken with tf.GradientTape) because the tape's gradient of
broadcasting ops needs `tf.BroadcastGradientArgs` with a dynamic batch, which is no TFLite
builtin. The reference in verify.py uses the tape, so the two are independent.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class LossSpec:
    name: str
    label_dtype: tf.DType
    labels_are_class_ids: bool     # int32 [batch] ids, else float32 [batch, outputs] targets
    output_name: str               # what `infer` returns
    label_smoothing: float = 0.0

    def label_spec(self, num_outputs: int) -> tf.TensorSpec:
        shape = [None] if self.labels_are_class_ids else [None, num_outputs]
        return tf.TensorSpec(shape, self.label_dtype, name="label")

    def outputs(self, logits: tf.Tensor) -> tf.Tensor:
        """What `infer` returns for the logits."""
        return tf.nn.softmax(logits) if self.labels_are_class_ids else logits

    def loss_and_logits_grad(self, logits: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return _LOSS_FUNCTIONS[self.name](self, logits, label)


def _softmax_cross_entropy(spec: LossSpec, logits, label):
    num_classes = logits.shape[-1]
    batch = tf.cast(tf.shape(logits)[0], tf.float32)
    target = tf.one_hot(label, num_classes, dtype=tf.float32)
    if spec.label_smoothing:
        target = target * (1.0 - spec.label_smoothing) + spec.label_smoothing / num_classes
    log_probabilities = tf.nn.log_softmax(logits)
    loss = -tf.reduce_sum(target * log_probabilities) / batch
    return loss, (tf.exp(log_probabilities) - target) / batch


def _mean_squared_error(spec: LossSpec, logits, label):
    count = tf.cast(tf.size(logits), tf.float32)
    error = logits - label
    return tf.reduce_sum(tf.square(error)) / count, 2.0 * error / count


_LOSS_FUNCTIONS: dict[str, Callable] = {
    "softmax_cross_entropy": _softmax_cross_entropy,
    "mse": _mean_squared_error,
}
LOSSES = tuple(_LOSS_FUNCTIONS)


def build_loss(name: str, label_smoothing: float = 0.0) -> LossSpec:
    from tflite_transfer.compiler.errors import InvalidInputError  # noqa: PLC0415

    if name not in _LOSS_FUNCTIONS:
        raise InvalidInputError(f"unknown --loss '{name}'; choose one of: {', '.join(LOSSES)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise InvalidInputError(f"--label_smoothing must be in [0, 1), got {label_smoothing}")
    if name == "mse":
        if label_smoothing:
            raise InvalidInputError("--label_smoothing applies to softmax_cross_entropy only")
        return LossSpec(name, tf.float32, False, "predictions")
    return LossSpec(name, tf.int32, True, "probabilities", label_smoothing)
