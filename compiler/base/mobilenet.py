"""The embedded default base: pixels [0, 255] -> Rescaling -> Keras MobileNetV2 (average
pooled), with pretrained weights from a file or synthetic but deterministic weights.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterator

import keras
import numpy as np

from tflite_transfer.compiler.base import conversion
from tflite_transfer.compiler.base.conversion import (SYNTHETIC_SEED, Calibration, ConvertedBase, Progress,
                                                      first_line, precision, synthetic_images)
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.base.from_keras import layer_output, freeze_keras


def build_default_mobilenet_v2(alpha: float = 1.0, image_size: int = 224,
                               weights_file: str | None = None,
                               calibration_dir: str | None = None,
                               num_calibration_images: int = 32,
                               progress: Progress = print,
                               quantize: bool = True, output_layer: str | None = None) -> ConvertedBase:
    """The embedded default base: Rescaling + Keras MobileNetV2 (pooled), int8 unless told.
    `output_layer`: a layer of the MobileNetV2 to end at instead of the pooling (e.g. its
    last feature map 'out_relu', 7x7x1280 at 224: what TensorFlow's example app trains on)."""
    model = mobilenet_v2_keras_model(alpha, image_size, weights_file, progress, output_layer)
    image_function = freeze_keras(model, None, f"MobileNetV2 alpha={alpha}")
    weights = ("synthetic weights" if weights_file is None
               else f"weights from {os.path.basename(weights_file)}")
    cut = f" cut at '{output_layer}'" if output_layer else ""
    description = (f"Keras MobileNetV2 alpha={alpha} {image_size}x{image_size}{cut}, "
                   f"{precision(quantize)} ({weights})")
    return conversion.convert(image_function, description, weights_file is None, quantize,
                              Calibration(calibration_dir, count=num_calibration_images), progress)


def mobilenet_v2_keras_model(alpha: float = 1.0, image_size: int = 224,
                             weights_file: str | None = None, progress: Progress = print,
                             output_layer: str | None = None):
    """The default base as a Keras model: pixels [0, 255] → Rescaling → MobileNetV2 (avg pool).

    Without `weights_file` the weights are synthetic but deterministic, with batch-norm
    statistics measured on synthetic images (see `_set_synthetic_weights`).
    """
    if image_size < 32:
        raise InvalidInputError(f"MobileNetV2 needs an image size >= 32, got {image_size}")
    if alpha <= 0:
        raise InvalidInputError(f"MobileNetV2 alpha must be > 0, got {alpha}")
    image = keras.Input((image_size, image_size, 3), name="image")
    backbone = keras.applications.MobileNetV2(
        weights=None, include_top=False, pooling="avg", alpha=alpha,
        input_shape=(image_size, image_size, 3))
    rescaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(image)
    model = keras.Model(image, backbone(rescaled))
    if weights_file is None:
        progress(f"MobileNetV2 alpha={alpha}: no weights file given, using SYNTHETIC weights "
                 "(features carry no real image knowledge)")
        _set_synthetic_weights(model, backbone, image_size)
    else:
        _load_backbone_weights(model, backbone, weights_file)
    if output_layer is not None:  # the same layers (and weights), ending inside the backbone
        inner = keras.Model(backbone.inputs[0], layer_output(backbone, output_layer, "the embedded MobileNetV2"))
        model = keras.Model(image, inner(rescaled))
    return model


def _set_synthetic_weights(model, backbone, image_size: int) -> None:
    """Seeded Glorot kernels and batch-norm statistics measured on synthetic images.

    Keras leaves BN mean/var at 0/1, which makes int8 calibration collapse (output scale
    ~1e-8, all zeros). With momentum 0, one training-mode call sets every moving mean/var
    to its batch statistics, layer by layer, consistently with the layers before it.
    """
    rng = np.random.default_rng(SYNTHETIC_SEED)
    batch_norms = [layer for layer in backbone.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in backbone.layers:
        for weight in layer.weights:
            if len(weight.shape) == 4:
                weight.assign(_glorot_uniform(rng, tuple(weight.shape)))
    for layer in batch_norms:
        # A random BN network is chaotic (float output moves by cos 0.8 for +-1 pixel noise,
        # so int8 rounding destroys it). Beta = 1 before each ReLU6 keeps most units in the
        # linear range; measured int8 vs float cosine 0.90 -> 0.998 at alpha 0.35, 96x96.
        if not layer.name.endswith("project_BN"):
            layer.beta.assign(np.ones(layer.beta.shape, np.float32))
    momenta = [layer.momentum for layer in batch_norms]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(synthetic_images(16, image_size, image_size, SYNTHETIC_SEED), training=True)
    for layer, momentum in zip(batch_norms, momenta):
        layer.momentum = momentum


def _glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    receptive_field = int(np.prod(shape[:-2]))
    fan_in, fan_out = shape[-2] * receptive_field, shape[-1] * receptive_field
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _load_backbone_weights(model, backbone, weights_file: str) -> None:
    """Loads a MobileNetV2 backbone's weights from a `.weights.h5`, `.keras` or `.h5` file.

    Full-model files are searched (the model and its nested models) for one whose first
    weights have exactly the backbone's shapes, so a classifier built on MobileNetV2 works.
    """
    if not os.path.isfile(weights_file):
        raise InvalidInputError(f"weights file {weights_file!r} does not exist")
    if weights_file.endswith(".weights.h5"):
        _load_weights_h5(model, backbone, weights_file)
        return
    try:
        source = keras.models.load_model(weights_file, compile=False)
    except Exception as error:
        raise InvalidInputError(f"weights file {weights_file!r} is not a loadable Keras "
                                f".keras/.h5 model: {first_line(error)}") from error
    wanted = [tuple(weight.shape) for weight in backbone.weights]
    for candidate in _models_within(source):
        values = candidate.get_weights()[:len(wanted)]
        if [value.shape for value in values] == wanted:
            backbone.set_weights(values)
            return
    raise InvalidInputError(
        f"weights file {weights_file!r} holds no MobileNetV2 backbone matching "
        f"'{backbone.name}' ({len(wanted)} tensors, first {wanted[0]}); check its alpha")


def _load_weights_h5(model, backbone, weights_file: str) -> None:
    """A `.weights.h5` saved from the backbone alone or from the whole default model."""
    failure = None
    for target in (backbone, model):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                target.load_weights(weights_file)
        except Exception as error:  # Keras raises ValueError, KeyError, OSError...
            failure = first_line(error)
            continue
        # Keras 3 only warns when parts of the file do not match ("Skipping ... will retain
        # their freshly-initialized weights"): a half-loaded backbone must not pass as loaded.
        skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
        if not skipped:
            return
        failure = skipped[0].splitlines()[0][:200]
    raise InvalidInputError(
        f"weights file {weights_file!r} does not fit MobileNetV2 '{backbone.name}': "
        f"{failure}; save it with save_weights from a MobileNetV2 of the same alpha")


def _models_within(model) -> Iterator:
    """The model itself, then every nested model, depth first."""
    yield model
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):
            yield from _models_within(layer)
