"""Trainable heads: a stack of dense layers, chosen by the CLI name.

Every head is a `HeadSpec`: dense layers with their initial weights. The training graph
writes the backward pass by hand for exactly these layers (TFLite cannot convert
`tf.GradientTape` over a dynamic batch with builtin ops only: the gradient of a
broadcasting op needs `tf.BroadcastGradientArgs`), so a Keras head is accepted when it is
made of the layers listed in `KERAS_LAYERS_ACCEPTED`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable

import numpy as np

from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError

# Activations whose derivative the training graph knows (see training_graph._activation_grad).
ACTIVATIONS = ("linear", "relu", "relu6", "tanh", "sigmoid")


@dataclasses.dataclass(frozen=True)
class DenseLayer:
    name: str                # used in variable names: "<name>_kernel", "<name>_bias"
    kernel: np.ndarray       # float32 [inputs, units] (Keras layout), initial value; the
                             # model stores its transpose (see training_graph)
    bias: np.ndarray         # float32 [units], initial value
    activation: str          # one of ACTIVATIONS; the last layer is "linear" (logits)

    @property
    def units(self) -> int:
        return int(self.kernel.shape[1])


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    kind: str                          # registry name: softmax, mlp, keras
    layers: tuple[DenseLayer, ...]
    description: str

    @property
    def bottleneck_size(self) -> int:
        return int(self.layers[0].kernel.shape[0])

    @property
    def num_outputs(self) -> int:
        return self.layers[-1].units

    @property
    def layer_shapes(self) -> tuple[tuple[str, int, int], ...]:
        """(name, units, inputs) per layer: what contract.state_layout walks."""
        return tuple((layer.name, layer.units, int(layer.kernel.shape[0])) for layer in self.layers)


def _glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def _dense_stack(bottleneck_size: int, hidden: tuple[int, ...], num_outputs: int,
                 seed: int) -> tuple[DenseLayer, ...]:
    rng = np.random.default_rng(seed)
    sizes = (bottleneck_size, *hidden, num_outputs)
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = index == len(sizes) - 2
        layers.append(DenseLayer(
            name=f"dense_{index}",
            kernel=_glorot_uniform(rng, fan_in, fan_out),
            bias=np.zeros(fan_out, np.float32),
            activation="linear" if last else "relu",
        ))
    return tuple(layers)


def _no_argument(arg: str) -> None:
    if arg:
        raise InvalidInputError(f"--head=softmax takes no argument (got 'softmax:{arg}')")


def softmax_head(_: None, bottleneck_size: int, num_outputs: int, seed: int) -> HeadSpec:
    return HeadSpec("softmax", _dense_stack(bottleneck_size, (), num_outputs, seed),
                    f"dense {bottleneck_size}->{num_outputs}")


def _hidden_sizes(arg: str) -> tuple[int, ...]:
    """'128' or '256,64' -> the hidden layers' sizes."""
    try:
        hidden = tuple(int(size) for size in arg.split(","))
    except ValueError:
        hidden = ()
    if not hidden or any(size < 1 for size in hidden):
        raise InvalidInputError(
            f"--head=mlp:{arg}: expected hidden layer sizes like 'mlp:128' or 'mlp:256,64'")
    return hidden


def mlp_head(hidden: tuple[int, ...], bottleneck_size: int, num_outputs: int, seed: int) -> HeadSpec:
    sizes = "->".join(str(s) for s in (bottleneck_size, *hidden, num_outputs))
    return HeadSpec("mlp", _dense_stack(bottleneck_size, hidden, num_outputs, seed),
                    f"MLP {sizes} (ReLU hidden layers)")


# Keras layer class name -> how it maps onto dense layers.
KERAS_LAYERS_ACCEPTED = ("InputLayer", "Dense", "Activation", "ReLU", "Flatten", "Dropout")


@dataclasses.dataclass(frozen=True)
class KerasHeadFile:
    """A user's Keras head, read into dense layers (its weights are the initial weights)."""
    path: str
    layers: tuple[DenseLayer, ...]


def read_keras_head(arg: str) -> KerasHeadFile:
    """Reads a user's Keras head (a model taking the bottleneck) into dense layers.

    A final softmax activation is dropped: the loss applies it. Dropout is dropped too
    (random ops would need Flex). Sizes are checked against the base in `keras_head`."""
    if not arg:
        raise InvalidInputError("--head=keras:FILE names no file; e.g. --head=keras:head.keras")
    path = user_files.check_regular_file(arg, "--head=keras:FILE", "a Keras .keras/.h5 file")
    import keras  # noqa: PLC0415 (TensorFlow is only needed for Keras heads)

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for unreadable files.
        first_line = (str(error).strip() or type(error).__name__).splitlines()[0][:200]
        raise InvalidInputError(f"--head=keras:FILE {user_files.shown(path)}: not a loadable Keras "
                                f"model ({first_line})") from None
    layers: list[DenseLayer] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in KERAS_LAYERS_ACCEPTED:
            raise UnsupportedModelError(
                f"{path}: layer '{layer.name}' ({kind}) is not supported in a head; "
                f"use {', '.join(KERAS_LAYERS_ACCEPTED)}")
        if kind == "Dense":
            kernel, *rest = layer.get_weights()
            bias = rest[0] if rest else np.zeros(kernel.shape[1], np.float32)
            if not layer.use_bias:
                raise UnsupportedModelError(
                    f"{path}: Dense layer '{layer.name}' has use_bias=False; heads need a bias")
            if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
                raise InvalidInputError(f"{path}: Dense layer '{layer.name}' holds NaN or infinite "
                                        "weights (a damaged file?); save the head again")
            layers.append(DenseLayer(_variable_prefix(layer.name), kernel.astype(np.float32),
                                     bias.astype(np.float32), "linear"))
            _set_last_activation(layers, _keras_activation_name(layer, path), path)
        elif kind in ("Activation", "ReLU"):
            if not layers:
                raise UnsupportedModelError(
                    f"{path}: activation layer '{layer.name}' before any Dense layer")
            _set_last_activation(layers, _keras_activation_name(layer, path), path)
    if not layers:
        raise InvalidInputError(f"{path}: the Keras head has no Dense layer")
    if layers[-1].activation not in ("linear", "softmax"):
        raise UnsupportedModelError(
            f"{path}: the last Dense layer '{layers[-1].name}' must be linear or softmax "
            f"(got {layers[-1].activation}); the loss applies the output activation")
    layers[-1] = dataclasses.replace(layers[-1], activation="linear")
    return KerasHeadFile(path, tuple(layers))


def keras_head(head_file: KerasHeadFile, bottleneck_size: int, num_outputs: int, seed: int) -> HeadSpec:
    path, layers = head_file.path, head_file.layers
    if layers[0].kernel.shape[0] != bottleneck_size:
        raise InvalidInputError(
            f"{path}: the head takes {layers[0].kernel.shape[0]} features but the base's "
            f"bottleneck has {bottleneck_size}")
    if layers[-1].units != num_outputs:
        raise InvalidInputError(
            f"{path}: the head has {layers[-1].units} outputs but --num_classes is {num_outputs}")
    return HeadSpec("keras", layers, f"Keras head {os.path.basename(path)}: "
                    + " -> ".join(f"{l.name}({l.units},{l.activation})" for l in layers))


def _variable_prefix(layer_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", layer_name)


def _keras_activation_name(layer, path: str) -> str:
    if type(layer).__name__ == "ReLU":
        if layer.max_value is None and not layer.negative_slope and not layer.threshold:
            return "relu"
        if layer.max_value == 6.0 and not layer.negative_slope and not layer.threshold:
            return "relu6"
        raise UnsupportedModelError(f"{path}: ReLU layer '{layer.name}' with custom parameters")
    activation = getattr(layer.activation, "__name__", str(layer.activation))
    if activation not in (*ACTIVATIONS, "softmax"):
        raise UnsupportedModelError(
            f"{path}: layer '{layer.name}' uses activation '{activation}'; "
            f"supported: {', '.join(ACTIVATIONS)} (softmax on the last layer)")
    return activation


def _set_last_activation(layers: list[DenseLayer], activation: str, path: str) -> None:
    if activation == "linear":
        return
    if layers[-1].activation != "linear":
        raise UnsupportedModelError(
            f"{path}: two activations in a row after Dense layer '{layers[-1].name}'")
    layers[-1] = dataclasses.replace(layers[-1], activation=activation)


@dataclasses.dataclass(frozen=True)
class HeadRecord:
    """One kind of head: how `--head` spells it, what it is, how its argument (the text after
    ':', its one hyper-parameter) is read and checked without the base, and its builder."""
    usage: str                 # e.g. 'mlp:H1[,H2,...]'
    description: str
    parse: Callable[[str], object]                       # the argument -> what build takes; raises
    build: Callable[[object, int, int, int], HeadSpec]   # (parsed, bottleneck size, outputs, seed)


HEADS: dict[str, HeadRecord] = {
    "softmax": HeadRecord("softmax", "one dense layer (the loss adds softmax)", _no_argument, softmax_head),
    "mlp": HeadRecord("mlp:H1[,H2,...]", "dense layers with ReLU hidden layers of H1, H2... units",
                      _hidden_sizes, mlp_head),
    "keras": HeadRecord("keras:FILE", "a Keras model of " + "/".join(KERAS_LAYERS_ACCEPTED[1:])
                        + " layers taking the bottleneck; its weights are the initial weights",
                        read_keras_head, keras_head),
}


def help_text() -> str:
    return "; ".join(f"'{record.usage}': {record.description}" for record in HEADS.values())


@dataclasses.dataclass(frozen=True)
class HeadChoice:
    """A `--head` value, checked before any base is loaded: the record and what it read from
    its argument (hidden sizes, a Keras head's layers)."""
    flag: str                  # as given: 'softmax', 'mlp:128,64', 'keras:head.keras'
    kind: str                  # the HEADS key
    argument: object           # what HEADS[kind].parse returned


def choose_head(flag: str) -> HeadChoice:
    """Reads and checks a `--head` flag value: `softmax`, `mlp:H1[,H2]`, `keras:FILE`."""
    if not isinstance(flag, str):
        raise InvalidInputError(f"--head must be a string such as 'softmax' or 'mlp:128', got {flag!r}")
    kind, _, arg = flag.partition(":")
    if kind not in HEADS:
        raise InvalidInputError(f"unknown --head '{flag}'; choose one of: "
                                f"{', '.join(record.usage for record in HEADS.values())}")
    return HeadChoice(flag, kind, HEADS[kind].parse(arg))


def build_head(head: HeadChoice | str, bottleneck_size: int, num_outputs: int, seed: int = 0) -> HeadSpec:
    """Builds the head of a checked choice (or a `--head` flag value) for the base's bottleneck."""
    choice = head if isinstance(head, HeadChoice) else choose_head(head)
    spec = HEADS[choice.kind].build(choice.argument, bottleneck_size, num_outputs, seed)
    for layer in spec.layers[:-1]:
        if layer.activation not in ACTIVATIONS:
            raise UnsupportedModelError(f"head layer '{layer.name}': activation '{layer.activation}'")
    return spec
