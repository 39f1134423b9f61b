"""Keras model files and SavedModel directories as bases: loaded, cut at a layer when asked,
and frozen as one `input -> bottleneck` function (any float32 input [batch, ...] with a
dynamic batch -> float32 [batch, features], or a spatial map [batch, H, W, C] / [batch, T, C]
that compiler/passes/cut.py adapts) that base_conversion turns into a `.tflite`.

The Keras cut (`--base_output` names a layer) happens here, before conversion: layer names do
not survive conversion as tensor names (batch norms are folded, ops renamed), so the `.tflite`
cut of cut.py cannot find them afterwards.
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tflite_transfer.compiler.base import conversion
from tflite_transfer.compiler.base.conversion import (Calibration, ConvertedBase, InputFunction, Progress,
                                                      first_line, freeze, precision, shapes)
from tflite_transfer.compiler.errors import InvalidInputError

KERAS_EXTENSIONS = (".keras", ".h5")


def convert_keras_base(path: str, output_layer: str | None = None, quantize: bool = True,
                       calibration_dir: str | None = None, num_calibration_images: int = 32,
                       progress: Progress = print, calibration: Calibration | None = None) -> ConvertedBase:
    """A `.keras` / `.h5` model file, optionally cut at `output_layer`, as a base.
    `calibration` (data file, stated input range) replaces calibration_dir/num_calibration_images."""
    model = _load_keras_model(path)
    image_function = freeze_keras(model, output_layer, path)
    cut = f" cut at '{output_layer}'" if output_layer else ""
    description = (f"Keras model {os.path.basename(path)}{cut} "
                   f"{shapes(image_function)}, {precision(quantize)}")
    calibration = calibration or Calibration(calibration_dir, count=num_calibration_images)
    return conversion.convert(image_function, description, False, quantize, calibration, progress)


def convert_saved_model_base(path: str, quantize: bool = True, calibration_dir: str | None = None,
                             num_calibration_images: int = 32, progress: Progress = print,
                             calibration: Calibration | None = None) -> ConvertedBase:
    """A SavedModel directory whose `serving_default` maps one input to one feature tensor."""
    image_function = _freeze_saved_model(path)
    description = (f"SavedModel {os.path.basename(os.path.normpath(path))} "
                   f"{shapes(image_function)}, {precision(quantize)}")
    calibration = calibration or Calibration(calibration_dir, count=num_calibration_images)
    return conversion.convert(image_function, description, False, quantize, calibration, progress)


def _load_keras_model(path: str):
    if os.path.isdir(path):
        raise InvalidInputError(f"{path!r} is a directory; for a SavedModel use "
                                "convert_saved_model_base, for Keras pass a .keras or .h5 file")
    if not os.path.isfile(path):
        raise InvalidInputError(f"Keras model file {path!r} does not exist")
    if not path.endswith(KERAS_EXTENSIONS) or path.endswith(".weights.h5"):
        raise InvalidInputError(f"{path!r} is not a Keras model file: expected a .keras or "
                                ".h5 file saved with model.save()")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # corrupt zip/HDF5, unknown custom layer, ...
        raise InvalidInputError(f"cannot load Keras model {path!r}: {first_line(error)}; "
                                "is it a complete model saved with model.save()?") from error


def freeze_keras(model, output_layer: str | None, source: str) -> InputFunction:
    """Cuts `model` at `output_layer` (if given) and freezes it as an input function."""
    if len(model.inputs) != 1:
        raise InvalidInputError(f"{source}: the base must have one input, found "
                                f"{len(model.inputs)} ({[t.name for t in model.inputs]})")
    image = model.inputs[0]
    input_shape = _check_input(source, image.name, tuple(image.shape), image.dtype)
    if output_layer is None:
        if len(model.outputs) != 1:
            raise InvalidInputError(f"{source}: the model has {len(model.outputs)} outputs; "
                                    "pick one with output_layer")
        bottleneck, where = model.outputs[0], "the model output"
    else:
        bottleneck, where = layer_output(model, output_layer, source), f"layer '{output_layer}'"
    flatten = _bottleneck_flattener(source, where, tuple(bottleneck.shape), bottleneck.dtype)
    cut = keras.Model(image, bottleneck)
    features = int(np.prod(bottleneck.shape[1:]))
    return InputFunction(freeze(lambda values: flatten(cut(values, training=False)), input_shape),
                         input_shape, features)


def layer_output(model, name: str, source: str):
    names = [layer.name for layer in model.layers]
    if name not in names:
        shown = ", ".join(names[-12:])
        raise InvalidInputError(f"{source}: no layer named '{name}'; the last layers are: "
                                f"{shown}")
    try:
        return model.get_layer(name).output
    except (AttributeError, ValueError) as error:  # shared layer: several outputs
        raise InvalidInputError(f"{source}: layer '{name}' has no single output "
                                f"({first_line(error)}); pick another layer") from error


def _freeze_saved_model(path: str) -> InputFunction:
    if not os.path.isdir(path):
        raise InvalidInputError(f"SavedModel directory {path!r} does not exist")
    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:  # missing saved_model.pb, corrupt proto, ...
        raise InvalidInputError(f"cannot load SavedModel {path!r}: {first_line(error)}") \
            from error
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise InvalidInputError(f"SavedModel {path!r} has no 'serving_default' signature "
                                f"(found: {sorted(loaded.signatures)}); re-export with one")
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidInputError(f"SavedModel {path!r}: serving_default must map one input to "
                                f"one output, found inputs {sorted(inputs)} and outputs "
                                f"{sorted(outputs)}")
    (input_name, input_spec), = inputs.items()
    (output_name, output_spec), = outputs.items()
    if input_spec.shape.rank and input_spec.shape[0] is not None:
        raise InvalidInputError(f"SavedModel {path!r}: input '{input_name}' has a fixed batch "
                                f"{input_spec.shape}; re-export with batch None")
    input_shape = _check_input(path, input_name, tuple(input_spec.shape), input_spec.dtype)
    flatten = _bottleneck_flattener(path, f"output '{output_name}'",
                                    tuple(output_spec.shape), output_spec.dtype)
    features = int(np.prod(output_spec.shape[1:]))
    return InputFunction(
        freeze(lambda values: flatten(signature(**{input_name: values})[output_name]), input_shape),
        input_shape, features)


def _check_input(source: str, name: str, shape: tuple, dtype) -> tuple[int, ...]:
    """The per-sample shape of a float input [batch, ...] with fixed sizes (an image
    [batch, h, w, c], audio [batch, samples], a feature map, a tabular row...)."""
    dtype = tf.as_dtype(dtype)
    if len(shape) < 2 or None in shape[1:] or not dtype.is_floating:
        raise InvalidInputError(
            f"{source}: input '{name}' is {dtype.name} {list(shape)}; a base needs one float "
            "input [batch, ...] whose sizes other than the batch are fixed")
    return tuple(int(d) for d in shape[1:])


def _bottleneck_flattener(source: str, where: str, shape: tuple, dtype) -> Callable:
    """The bottleneck as [batch, features] ([batch, 1, 1, features] is flattened here); a
    spatial map [batch, H, W, C] or [batch, T, C] passes as it is, for cut.py's adapter."""
    dtype = tf.as_dtype(dtype)
    if len(shape) not in (2, 3, 4) or None in shape[1:] or not dtype.is_floating:
        raise InvalidInputError(
            f"{source}: {where} is {dtype.name} {list(shape)}; the bottleneck must be float "
            "[batch, features] or a map [batch, H, W, C] / [batch, T, C] with fixed sizes")
    if len(shape) == 4 and tuple(shape[1:3]) == (1, 1):
        return lambda bottleneck: tf.reshape(bottleneck, [-1, int(shape[3])])
    return lambda bottleneck: bottleneck
