"""Few-shot personalization methods on cached bottlenecks, each scored on held-out bottlenecks.

Ours go through `TransferModel` (the fused .tflite in LiteRT): `fit` with the compiled SGD or
Adam step, `imprint`, and imprint followed by `fit`. The references are a nearest-class-mean
classifier in numpy and the same softmax head trained by TensorFlow/Keras (Dense layer, Keras
optimizer, categorical cross-entropy) from the same initial weights on the same batches in the
same order: the only differences left are the interpreter's arithmetic and the features.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tflite_transfer.runtime import TransferModel, contract


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long a few-shot `fit` runs: about `steps` optimizer steps, whatever k is."""
    steps: int = 1000
    batch_size: int = 16

    def epochs_and_batch(self, samples: int) -> tuple[int, int]:
        batch = min(self.batch_size, samples)
        return max(1, math.ceil(self.steps / math.ceil(samples / batch))), batch


@dataclasses.dataclass(frozen=True)
class FewShotTask:
    """One draw at one k: the training bottlenecks and the held-out ones."""
    train_bottlenecks: np.ndarray    # float32 [k * classes, features]
    train_labels: np.ndarray         # int32 [k * classes]
    test_bottlenecks: np.ndarray     # float32 [n, features]
    test_labels: np.ndarray          # int32 [n]
    seed: int                        # shuffling seed of `fit` (and of the reference)


def head_weight_names(metadata: contract.ModelMetadata) -> tuple[str, str]:
    """(kernel, bias) of a single-layer head, found by their contract roles."""
    (kernel,), (bias,) = metadata.entries_with_role(contract.KERNEL), metadata.entries_with_role(contract.BIAS)
    return kernel.name, bias.name


def head_predictions(state: dict[str, np.ndarray], bottlenecks: np.ndarray,
                     names: tuple[str, str]) -> np.ndarray:
    """Class ids from a single-layer softmax head's state ([units, inputs] kernel; `names` from
    head_weight_names): what `infer` computes after `load`, without running the base again."""
    kernel_name, bias_name = names
    logits = bottlenecks.astype(np.float64) @ state[kernel_name].T.astype(np.float64)
    return (logits + state[bias_name]).argmax(axis=1)


def relative_difference(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """Largest ||ours - reference||_2 / ||reference||_2 over the reference's kernel and bias."""
    return max(float(np.linalg.norm(ours[name].astype(np.float64) - reference[name])
                     / max(np.linalg.norm(reference[name]), np.finfo(np.float32).tiny))
               for name in reference)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def _start(model: TransferModel, task: FewShotTask) -> None:
    model.reset()   # compiled initial weights, optimizer slots, step and learning rate
    model.clear_samples()
    model.add_bottlenecks(task.train_bottlenecks, task.train_labels)


def _fit(model: TransferModel, task: FewShotTask, schedule: Schedule) -> None:
    epochs, batch = schedule.epochs_and_batch(model.num_samples)
    model.fit(epochs=epochs, batch_size=batch, shuffle=True, seed=task.seed, progress=False)


def train_on_device(model: TransferModel, task: FewShotTask, schedule: Schedule) -> dict:
    """Our `train` signature (the model's compiled optimizer and learning rate)."""
    _start(model, task)
    _fit(model, task, schedule)
    return model.get_state()


def imprint_on_device(model: TransferModel, task: FewShotTask) -> dict:
    _start(model, task)
    model.imprint()
    return model.get_state()


def imprint_and_fine_tune(model: TransferModel, task: FewShotTask, schedule: Schedule,
                          learning_rate: float) -> dict:
    """Imprint, then `fit` at a smaller learning rate set on device."""
    _start(model, task)
    model.imprint()
    model.set_learning_rate(learning_rate)
    _fit(model, task, schedule)
    return model.get_state()


def nearest_class_mean(task: FewShotTask) -> np.ndarray:
    """Euclidean nearest class mean (the rule `imprint` writes into the head), in numpy."""
    classes = np.unique(task.train_labels)
    means = np.stack([task.train_bottlenecks[task.train_labels == c].mean(0) for c in classes])
    distances = ((task.test_bottlenecks[:, None, :].astype(np.float64) - means[None]) ** 2).sum(-1)
    return classes[distances.argmin(axis=1)]


class KerasReference:
    """The same head and optimizer in TensorFlow/Keras, reset to a model's initial state per run.

    The Dense layer and the Keras optimizer are built once and their variables restored before
    each run, so the `tf.function` step is traced once (a fresh optimizer would retrace it).
    """

    def __init__(self, initial_state: dict[str, np.ndarray], optimizer: dict, names: tuple[str, str]):
        import keras  # noqa: PLC0415
        import tensorflow as tf  # noqa: PLC0415

        from tflite_transfer.compiler.head.optimizers import OptimizerSpec  # noqa: PLC0415

        self._kernel_name, self._bias_name = names
        kernel = initial_state[self._kernel_name]            # ours: [units, inputs]
        self._initial = [kernel.T.copy(), initial_state[self._bias_name].copy()]
        self._dense = keras.layers.Dense(kernel.shape[0])
        self._dense.build((None, kernel.shape[1]))
        spec = OptimizerSpec.from_record(optimizer)
        self._optimizer = spec.keras_optimizer()
        self._optimizer.build(self._dense.trainable_variables)
        self._optimizer_initial = [v.numpy() for v in self._optimizer.variables]
        loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
        classes = kernel.shape[0]
        variables = self._dense.trainable_variables

        @tf.function(input_signature=[tf.TensorSpec([None, kernel.shape[1]], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def step(bottleneck, label):
            with tf.GradientTape() as tape:
                loss = loss_fn(tf.one_hot(label, classes), self._dense(bottleneck))
            self._optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        self._step = step

    def train(self, task: FewShotTask, schedule: Schedule) -> dict[str, np.ndarray]:
        """Same batches as `TransferModel.fit(shuffle=True, seed=task.seed)`."""
        self._dense.set_weights(self._initial)
        for variable, value in zip(self._optimizer.variables, self._optimizer_initial):
            variable.assign(value)
        samples = len(task.train_labels)
        epochs, batch = schedule.epochs_and_batch(samples)
        rng = np.random.default_rng(task.seed)
        for _ in range(epochs):
            order = rng.permutation(samples)
            for start in range(0, samples, batch):
                rows = order[start:start + batch]
                self._step(task.train_bottlenecks[rows], task.train_labels[rows])
        kernel, bias = self._dense.get_weights()
        return {self._kernel_name: kernel.T, self._bias_name: bias}
