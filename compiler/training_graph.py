"""The head's training graph: a tf.Module with the contract's head-side signatures,
converted to a builtin-only `.tflite` with resource variables.

Signatures of the converted head (fuse.py adds the base in front of `infer`/`train`):
  infer(bottleneck) -> {probabilities | predictions}
  train(bottleneck, label) -> {loss: [1]}           one optimizer step
  save() -> {every state variable, by name}
  restore({same names}) -> {step: [1]}
  initialize() -> {step: [1]}                       back to the compiled initial values
  set_learning_rate(learning_rate: [1]) -> {learning_rate: [1]}
Scalars in the contract are shape [1]: such tensors travel through every TFLite API.
Kernels are stored [units, inputs], TFLite's FULLY_CONNECTED layout (the transpose of Keras'
Dense kernel): the forward pass is then one FULLY_CONNECTED and the weight gradient one small
BATCH_MATMUL, which halved the train step at batch 1 against x @ W with BATCH_MATMUL.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np
import tensorflow as tf

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.heads import HeadSpec
from tflite_transfer.compiler.losses import LossSpec
from tflite_transfer.compiler.optimizers import OptimizerSpec
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.contract import LEARNING_RATE, STEP

# The head's signatures; fuse.py adds `load` and `train_images` around the base.
HEAD_SIGNATURES = (contract.INFER, contract.TRAIN, contract.SAVE, contract.RESTORE,
                   contract.INITIALIZE, contract.SET_LEARNING_RATE)


@dataclasses.dataclass(frozen=True)
class TrainingHead:
    """The converted head and what the rest of the compiler needs to know about it."""
    tflite: bytes
    head: HeadSpec
    loss: LossSpec
    optimizer: OptimizerSpec
    initial_state: dict[str, np.ndarray]     # every state variable's compiled initial value

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self.initial_state)


def initial_state(head: HeadSpec, optimizer: OptimizerSpec) -> dict[str, np.ndarray]:
    """Names and initial values of every variable `save` returns, in a fixed order."""
    state: dict[str, np.ndarray] = {}
    weight_names = []
    for layer in head.layers:
        for kind, value in ((contract.KERNEL, layer.kernel.T), (contract.BIAS, layer.bias)):
            _add_unique(state, contract.weight_name(layer.name, kind), np.asarray(value, np.float32))
            weight_names.append(contract.weight_name(layer.name, kind))
    for name in weight_names:
        for suffix in optimizer.slot_suffixes:
            _add_unique(state, contract.slot_name(name, suffix), np.zeros_like(state[name]))
    # Shape [1], not scalars: rank-0 signature inputs crash some runtimes (LiteRT 1.0.1
    # segfaults resizing them in restore) and tfjs-tflite turns scalars into shape [0].
    _add_unique(state, STEP, np.array([0], np.int32))
    _add_unique(state, LEARNING_RATE, np.array([optimizer.learning_rate], np.float32))
    return state


def _add_unique(state: dict[str, np.ndarray], name: str, value: np.ndarray) -> None:
    if name in state:
        raise InvalidInputError(
            f"conflicting variable names: '{name}' is used twice in the head/optimizer state; "
            "rename the head's layers")
    state[name] = value


def weight_names(head: HeadSpec) -> list[tuple[str, str]]:
    """(kernel name, bias name) per layer."""
    return [(contract.weight_name(layer.name, contract.KERNEL), contract.weight_name(layer.name, contract.BIAS))
            for layer in head.layers]


class _HeadModule(tf.Module):
    def __init__(self, head: HeadSpec, loss: LossSpec, optimizer: OptimizerSpec,
                 state: dict[str, np.ndarray]):
        super().__init__(name="tflite_transfer_head")
        self._head, self._loss, self._optimizer = head, loss, optimizer
        self._initial = state
        self.state = {name: tf.Variable(value, name=name) for name, value in state.items()}

    def _forward(self, bottleneck):
        """Returns the logits and every layer's (input, pre-activation, output) for backprop."""
        trace, activation = [], bottleneck
        for (kernel, bias), layer in zip(weight_names(self._head), self._head.layers):
            pre_activation = tf.matmul(activation, self.state[kernel], transpose_b=True) + self.state[bias]
            output = _activate(layer.activation, pre_activation)
            trace.append((activation, pre_activation, output))
            activation = output
        return activation, trace

    def _backward(self, logits_grad, trace):
        """Gradients of every kernel and bias, by name."""
        grads, output_grad = {}, logits_grad
        names = weight_names(self._head)
        for index in reversed(range(len(names))):
            kernel, bias = names[index]
            layer_input, pre_activation, output = trace[index]
            pre_grad = _activation_grad(self._head.layers[index].activation,
                                        output_grad, pre_activation, output)
            grads[kernel] = tf.matmul(pre_grad, layer_input, transpose_a=True)
            grads[bias] = tf.reduce_sum(pre_grad, axis=0)
            if index:
                output_grad = tf.matmul(pre_grad, self.state[kernel])
        return grads

    def infer(self, bottleneck):
        logits, _ = self._forward(bottleneck)
        return {self._loss.output_name: self._loss.outputs(logits)}

    def train(self, bottleneck, label):
        logits, trace = self._forward(bottleneck)
        loss, logits_grad = self._loss.loss_and_logits_grad(logits, label)
        grads = self._backward(logits_grad, trace)
        learning_rate = tf.reshape(self.state[LEARNING_RATE].read_value(), [])
        step = tf.cast(tf.reshape(self.state[STEP].read_value(), []), tf.float32)
        for name, grad in grads.items():
            slots = {s: self.state[contract.slot_name(name, s)] for s in self._optimizer.slot_suffixes}
            self._optimizer.apply(self.state[name], grad, slots, learning_rate, step)
        self.state[STEP].assign_add(tf.constant([1], tf.int32))
        return {contract.LOSS: tf.reshape(loss, [1])}

    def save(self):
        return {name: variable.read_value() for name, variable in self.state.items()}

    def restore(self, values):
        for name, variable in self.state.items():
            variable.assign(values[name])
        return {STEP: self.state[STEP].read_value()}

    def initialize(self):
        for name, variable in self.state.items():
            variable.assign(tf.constant(self._initial[name]))
        return {STEP: self.state[STEP].read_value()}

    def set_learning_rate(self, learning_rate):
        self.state[LEARNING_RATE].assign(learning_rate)
        return {LEARNING_RATE: self.state[LEARNING_RATE].read_value()}

    def concrete_functions(self) -> dict:
        bottleneck = tf.TensorSpec([None, self._head.bottleneck_size], tf.float32, name=contract.BOTTLENECK)
        label = self._loss.label_spec(self._head.num_outputs)
        state_specs = {name: tf.TensorSpec(value.shape, tf.as_dtype(value.dtype), name=name)
                       for name, value in self._initial.items()}
        return {
            contract.INFER: tf.function(self.infer).get_concrete_function(bottleneck),
            contract.TRAIN: tf.function(self.train).get_concrete_function(bottleneck, label),
            contract.SAVE: tf.function(self.save).get_concrete_function(),
            contract.RESTORE: tf.function(self.restore).get_concrete_function(state_specs),
            contract.INITIALIZE: tf.function(self.initialize).get_concrete_function(),
            contract.SET_LEARNING_RATE: tf.function(self.set_learning_rate).get_concrete_function(
                tf.TensorSpec([1], tf.float32, name=LEARNING_RATE)),
        }


def _activate(name: str, x):
    return {"linear": lambda v: v, "relu": tf.nn.relu, "relu6": tf.nn.relu6,
            "tanh": tf.tanh, "sigmoid": tf.sigmoid}[name](x)


def _activation_grad(name: str, output_grad, pre_activation, output):
    if name == "linear":
        return output_grad
    if name == "relu":
        return output_grad * tf.cast(pre_activation > 0, tf.float32)
    if name == "relu6":
        inside = tf.logical_and(pre_activation > 0, pre_activation < 6)
        return output_grad * tf.cast(inside, tf.float32)
    if name == "tanh":
        return output_grad * (1.0 - tf.square(output))
    return output_grad * output * (1.0 - output)  # sigmoid


def build_training_head(head: HeadSpec, loss: LossSpec, optimizer: OptimizerSpec) -> TrainingHead:
    """Builds the head's training graph in TensorFlow and converts it with builtin ops only."""
    state = initial_state(head, optimizer)
    module = _HeadModule(head, loss, optimizer, state)
    functions = module.concrete_functions()
    with tempfile.TemporaryDirectory(prefix="tflite_transfer_head_") as saved_model_dir:
        tf.saved_model.save(module, saved_model_dir, signatures=functions)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=list(HEAD_SIGNATURES))
        converter.experimental_enable_resource_variables = True
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        tflite = converter.convert()
    return TrainingHead(tflite, head, loss, optimizer, state)
