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
Dense kernel), so no transpose of the weights is ever materialised: the forward pass is
FULLY_CONNECTED, or BATCH_MATMUL with adj_y for wide layers at batch > 1 (see `_dense`), and each
update's one weight-sized product is BATCH_MATMUL(scaled pre-activation gradient, input, adj_x).
A train step reads each variable once and assigns it once; the optimizer registry
(optimizers.py) folds its scalars into the small operand (measured: benchmarks/speed).
"""

from __future__ import annotations

import dataclasses
import tempfile

import numpy as np
import tensorflow as tf

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.head.heads import HeadSpec
from tflite_transfer.compiler.head.losses import LossSpec
from tflite_transfer.compiler.head.optimizers import OptimizerSpec, UpdateInputs
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
    """Names and initial values of every variable `save` returns, in the contract's order
    (contract.state_layout): the head's weights, zero slots, step 0, the learning rate."""
    layout = contract.state_layout(head.layer_shapes, optimizer.slot_suffixes)
    names = [entry.name for entry in layout]
    twice = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if twice is not None:
        raise InvalidInputError(
            f"conflicting variable names: '{twice}' is used twice in the head/optimizer state; "
            "rename the head's layers")
    layers = {layer.name: layer for layer in head.layers}
    state: dict[str, np.ndarray] = {}
    for entry in layout:
        if entry.role == contract.KERNEL:
            value = layers[entry.layer].kernel.T
        elif entry.role == contract.BIAS:
            value = layers[entry.layer].bias
        elif entry.role == LEARNING_RATE:
            value = [optimizer.learning_rate]
        else:  # optimizer slots and the step start at zero
            value = np.zeros(entry.shape)
        # Shape [1], not scalars, for step and learning_rate: rank-0 signature inputs crash some
        # runtimes (LiteRT 1.0.1 segfaults resizing them in restore) and tfjs-tflite turns
        # scalars into shape [0].
        state[entry.name] = np.asarray(value, entry.numpy_dtype).reshape(entry.shape)
    return state


def weight_names(head: HeadSpec) -> list[tuple[str, str]]:
    """(kernel name, bias name) per layer, as contract.state_layout names them."""
    layout = contract.state_layout(head.layer_shapes, ())
    kernels = [entry.name for entry in layout if entry.role == contract.KERNEL]
    biases = [entry.name for entry in layout if entry.role == contract.BIAS]
    return list(zip(kernels, biases))


class _HeadModule(tf.Module):
    def __init__(self, head: HeadSpec, loss: LossSpec, optimizer: OptimizerSpec,
                 state: dict[str, np.ndarray], dispatch: str):
        super().__init__(name="tflite_transfer_head")
        self._dispatch = dispatch
        self._head, self._loss, self._optimizer = head, loss, optimizer
        self._initial = state
        self.state = {name: tf.Variable(value, name=name) for name, value in state.items()}

    def _forward(self, bottleneck, kernels=None):
        """The logits and every layer's (input, pre-activation, output) for backprop.
        `kernels`: each kernel's value already read (one READ_VARIABLE, a full copy, per step)."""
        trace, activation = [], bottleneck
        for (kernel, bias), layer in zip(weight_names(self._head), self._head.layers):
            kernel_value = kernels[kernel] if kernels else self.state[kernel]
            bias_value = kernels[bias] if kernels else self.state[bias]
            pre_activation = _dense(activation, kernel_value, self._dispatch) + bias_value
            output = _activate(layer.activation, pre_activation)
            trace.append((activation, pre_activation, output))
            activation = output
        return activation, trace

    def _backward(self, logits_grad, trace, values):
        """Every kernel's and bias' gradient by name, factored (see `Gradient`)."""
        grads, output_grad = {}, logits_grad
        names = weight_names(self._head)
        for index in reversed(range(len(names))):
            kernel, bias = names[index]
            layer_input, pre_activation, output = trace[index]
            pre_grad = _activation_grad(self._head.layers[index].activation,
                                        output_grad, pre_activation, output)
            grads[kernel] = Gradient(pre_grad, layer_input)
            grads[bias] = Gradient(pre_grad, None)
            if index:
                output_grad = tf.matmul(pre_grad, values[kernel])
        return grads

    def infer(self, bottleneck):
        logits, _ = self._forward(bottleneck)
        return {self._loss.output_name: self._loss.outputs(logits)}

    def train(self, bottleneck, label):
        # Each variable is read once: the forward pass, the backward pass and the update all
        # use that value, and the update's result is assigned once.
        values = {name: self.state[name].read_value()
                  for pair in weight_names(self._head) for name in pair}
        logits, trace = self._forward(bottleneck, values)
        loss, logits_grad = self._loss.loss_and_logits_grad(logits, label)
        grads = self._backward(logits_grad, trace, values)
        learning_rate = tf.reshape(self.state[LEARNING_RATE].read_value(), [])
        step = tf.cast(tf.reshape(self.state[STEP].read_value(), []), tf.float32)
        record = self._optimizer.record
        for name, grad in grads.items():
            slots = {s: self.state[contract.slot_name(name, s)].read_value() for s in self._optimizer.slot_suffixes}
            new_value, new_slots = record.update(
                self._optimizer, UpdateInputs(values[name], grad, slots, learning_rate, step))
            for suffix, slot_value in new_slots.items():
                self.state[contract.slot_name(name, suffix)].assign(slot_value)
            self.state[name].assign(new_value)
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
        label = _label_spec(self._loss, self._head.num_outputs)
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


def _label_spec(loss: LossSpec, num_outputs: int) -> tf.TensorSpec:
    """`label` of train: int32 class ids [batch] or float32 targets [batch, outputs] (contract.LabelSpec)."""
    label = loss.label(num_outputs)
    return tf.TensorSpec([None, *label.shape], tf.as_dtype(label.dtype), name=contract.LABEL)


class Gradient:
    """A variable's gradient kept as its factors: `pre_grad` [batch, units] (the gradient of
    the layer's pre-activation) and the layer's input [batch, inputs] (None for a bias).
    `times(c)` is c * gradient with c applied to the small [batch, units] operand, so a scalar
    costs no pass over a [units, inputs] tensor; each call makes one product."""

    def __init__(self, pre_grad, layer_input):
        self._pre_grad, self._layer_input = pre_grad, layer_input

    def times(self, scale):
        scaled = self._pre_grad * scale
        if self._layer_input is None:
            return tf.reduce_sum(scaled, axis=0)
        # [units, inputs] = scaled^T x: BATCH_MATMUL with adj_x (XNNPACK takes it; the
        # transpose of the small operand is never materialised as a tensor).
        return tf.matmul(scaled, self._layer_input, transpose_a=True)


def _dense(activation, kernel, dispatch):
    """activation [batch, inputs] x kernel [units, inputs]^T, by the op that is fastest here.

    Measured (LiteRT 2.3, XNNPACK, 1 thread; benchmarks/speed): XNNPACK does not take
    FULLY_CONNECTED with non-constant weights, so it runs the builtin kernel: a fast gemv at
    batch 1 (one read of the weights) but 5-8x slower than XNNPACK's BATCH_MATMUL at batch 32
    with 1000 classes. BATCH_MATMUL packs the weights on every call (one more pass), which loses
    at batch 1 and on tiny layers. Hence an IF on the batch size for layers with many units;
    the input is made rank 3 so the converter keeps BATCH_MATMUL instead of folding it into
    FULLY_CONNECTED, and adj_y reads the [units, inputs] kernel without materialising a transpose.
    """
    def by_fully_connected():
        return tf.matmul(activation, kernel, transpose_b=True)

    if kernel.shape[0] < MIN_UNITS_FOR_BATCH_MATMUL or dispatch == FORWARD_FULLY_CONNECTED:
        return by_fully_connected()

    def by_batch_matmul():
        batched = tf.expand_dims(activation, 0)
        return tf.squeeze(tf.raw_ops.BatchMatMulV2(x=batched, y=kernel, adj_y=True), 0)
    if dispatch == FORWARD_BATCH_MATMUL:
        return by_batch_matmul()
    return tf.cond(tf.shape(activation)[0] > 1, by_batch_matmul, by_fully_connected)


# How wide layers compute their forward pass: an IF on the batch (any batch), or one op when
# the signatures' batches are fixed (--batch): an IF's branch subgraphs are shared by `train`
# and `train_images`, which compiler/passes/batch.py cannot give two different static batches.
FORWARD_BY_BATCH, FORWARD_FULLY_CONNECTED, FORWARD_BATCH_MATMUL = "by batch", "fully_connected", "batch_matmul"


def forward_dispatch(fixed_batches: bool, train_batch: int | None) -> str:
    """FORWARD_BY_BATCH for dynamic signatures; with fixed batches the op for `train`'s batch."""
    if not fixed_batches:
        return FORWARD_BY_BATCH
    return FORWARD_FULLY_CONNECTED if train_batch == 1 else FORWARD_BATCH_MATMUL


# Below this many units FULLY_CONNECTED wins at every batch (1280->4: 1.3-2x faster).
MIN_UNITS_FOR_BATCH_MATMUL = 32


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


def build_training_head(head: HeadSpec, loss: LossSpec, optimizer: OptimizerSpec,
                        dispatch: str = FORWARD_BY_BATCH) -> TrainingHead:
    """Builds the head's training graph in TensorFlow and converts it with builtin ops only.
    `dispatch`: see `forward_dispatch` (fixed signature batches need a static choice)."""
    state = initial_state(head, optimizer)
    module = _HeadModule(head, loss, optimizer, state, dispatch)
    functions = module.concrete_functions()
    with tempfile.TemporaryDirectory(prefix="tflite_transfer_head_") as saved_model_dir:
        tf.saved_model.save(module, saved_model_dir, signatures=functions)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=list(HEAD_SIGNATURES))
        converter.experimental_enable_resource_variables = True
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        tflite = converter.convert()
    return TrainingHead(tflite, head, loss, optimizer, state)
