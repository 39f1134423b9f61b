"""`--verify`: N train steps in the TFLite interpreter against an independent TensorFlow
eager reference (Keras Dense layers, Keras losses, tf.GradientTape, Keras optimizers) from
the same initial weights on the same batches.

The figure checked is the relative difference of the head's weights taken as one vector:
||tflite - reference||_2 / ||reference||_2 over every kernel and bias together; per-variable
figures and the largest absolute difference are reported for diagnosis. Element-wise (or
per-variable) ratios are ill-conditioned: Adam's step is almost sign(gradient) where a
gradient is near zero, so float32 summation-order differences (XNNPACK vs TensorFlow's
matmul) can move such an element by a visible part of a step, and a zero-initialised bias of
3 classes with one near-zero gradient read 6e-4 per variable while the weights as a whole
agreed to 1e-6. A missing or wrong update still shows: a bias left untouched reads ~1e-3.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.compiler.head.training_graph import TrainingHead, weight_names
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.interpreter import new_interpreter, read_metadata


@dataclasses.dataclass(frozen=True)
class ParityReport:
    steps: int
    batch_size: int
    max_relative_difference: float            # ||delta|| / ||reference||, all weights as one vector
    per_variable: dict[str, float]
    max_loss_difference: float                 # |loss_tflite - loss_reference| over steps
    max_absolute_difference: float             # largest |tflite - reference| of any weight
    interpreter: str

    def passed(self, tolerance: float) -> bool:
        return self.max_relative_difference <= tolerance


def random_batches(head: TrainingHead, steps: int, batch_size: int, seed: int):
    """Bottlenecks like pooled post-ReLU features (uniform [0, 1): |x|^2 ~ features / 3, the
    scale of real MobileNetV2 bottlenecks), and labels for the head's loss."""
    rng = np.random.default_rng(seed)
    size, outputs = head.head.bottleneck_size, head.head.num_outputs
    for _ in range(steps):
        bottleneck = rng.random((batch_size, size), dtype=np.float32)
        if head.loss.takes_class_ids:
            label = rng.integers(0, outputs, batch_size).astype(np.int32)
        elif head.loss.labels_are_class_ids:  # one-hot/soft rows: non-negative, summing to 1
            label = rng.dirichlet(np.ones(outputs), batch_size).astype(np.float32)
        else:
            label = rng.normal(size=(batch_size, outputs)).astype(np.float32)
        yield bottleneck, label


def reference_training(head: TrainingHead, initial: dict[str, np.ndarray], batches):
    """TF eager / Keras: the same head, loss and optimizer, differentiated by GradientTape."""
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    layers = []
    for layer, (kernel_name, bias_name) in zip(head.head.layers, weight_names(head.head)):
        dense = keras.layers.Dense(layer.units, activation=layer.activation)
        dense.build((None, layer.kernel.shape[0]))
        dense.set_weights([initial[kernel_name].T, initial[bias_name]])  # ours: [units, inputs]
        layers.append(dense)
    loss_fn = head.loss.keras_reference()
    optimizer = head.optimizer.record.keras_reference(head.optimizer)  # the registry record's reference
    optimizer.learning_rate = float(initial[contract.LEARNING_RATE][0])
    variables = [v for dense in layers for v in (dense.kernel, dense.bias)]
    losses = []
    for bottleneck, label in batches:
        target = (tf.one_hot(label, head.head.num_outputs) if head.loss.takes_class_ids
                  else tf.constant(label))
        with tf.GradientTape() as tape:
            output = tf.constant(bottleneck)
            for dense in layers:
                output = dense(output)
            loss = loss_fn(target, output)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        losses.append(float(loss))
    names = [n for pair in weight_names(head.head) for n in pair]
    kernels = {kernel for kernel, _ in weight_names(head.head)}
    return {n: (v.numpy().T if n in kernels else v.numpy())
            for n, v in zip(names, variables)}, losses


DEFAULT_BATCH = 8   # batch of the checked steps when `train` takes any batch


def verify_training(model_bytes: bytes, head: TrainingHead, steps: int = 10, batch_size: int = DEFAULT_BATCH,
                    seed: int = 0) -> ParityReport:
    interpreter, interpreter_name = new_interpreter(model_bytes, num_threads=1)
    names = read_metadata(model_bytes, "compiled model").tensor_names
    initial = interpreter.get_signature_runner(contract.SAVE)()
    batches = list(random_batches(head, steps, batch_size, seed))
    train = interpreter.get_signature_runner(contract.TRAIN)
    tflite_losses = [float(train(**{names.bottleneck: b, names.label: l})[names.loss][0])
                     for b, l in batches]
    trained = interpreter.get_signature_runner(contract.SAVE)()
    interpreter.get_signature_runner(contract.INITIALIZE)()  # leave no trace of the check
    reference, reference_losses = reference_training(head, initial, batches)
    per_variable, absolute, squared_difference, squared_norm = {}, 0.0, 0.0, 0.0
    for name, expected in reference.items():
        difference = trained[name].astype(np.float64) - expected
        scale = max(float(np.linalg.norm(expected)), np.finfo(np.float32).tiny)
        per_variable[name] = float(np.linalg.norm(difference)) / scale
        absolute = max(absolute, float(np.max(np.abs(difference))))
        squared_difference += float(np.sum(difference ** 2))
        squared_norm += float(np.sum(np.asarray(expected, np.float64) ** 2))
    relative = np.sqrt(squared_difference) / max(np.sqrt(squared_norm), np.finfo(np.float32).tiny)
    return ParityReport(steps, batch_size, float(relative), per_variable,
                        max(abs(a - b) for a, b in zip(tflite_losses, reference_losses)),
                        absolute, interpreter_name)
