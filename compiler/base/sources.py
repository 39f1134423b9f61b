"""Base sources: a .tflite file, a Keras file, a SavedModel directory, or the embedded
default (a MobileNetV2 built and int8-quantized here). All end as TFLite bytes."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.options import DEFAULT_BASE, BaseOptions  # noqa: F401 (BaseOptions: API)


@dataclasses.dataclass(frozen=True)
class BaseSource:
    tflite: bytes                 # the base exactly as the user (or our converter) gave it
    model: model_io.ModelT
    description: str
    synthetic_weights: bool
    cut_at: str | None            # the tensor cut.py cuts the .tflite at; None: its one output
    source: str                   # file name for messages
    image_range: tuple[float, float] | None = None   # pixel range the base expects, when known


def load_base(options: BaseOptions, progress: Callable[[str], None] = print) -> BaseSource:
    path = options.base
    if path in (None, DEFAULT_BASE):
        if options.base_output:
            raise InvalidInputError("--base_output applies to --base files; the embedded "
                                    "MobileNetV2 already ends at its pooled bottleneck")
        from tflite_transfer.compiler.base import mobilenet  # noqa: PLC0415 (Keras: seconds to import)

        converted = mobilenet.build_default_mobilenet_v2(
            alpha=options.alpha, image_size=options.image_size, weights_file=options.base_weights,
            calibration_dir=options.calibration_dir,
            num_calibration_images=options.num_calibration_images, progress=progress)
        return _from_converted(converted, source=DEFAULT_BASE)
    if options.base_weights:
        raise InvalidInputError("--base_weights applies to the embedded default base only")
    path, is_directory = user_files.check_file_or_directory(
        path, "--base", "a .tflite/.keras/.h5 file or a SavedModel directory")
    source = user_files.printable(path)
    if is_directory:
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise InvalidInputError(f"{source}: a directory base must be a SavedModel (no saved_model.pb)")
        converted = _keras_base().convert_saved_model_base(
            path, quantize=options.quantize, calibration_dir=options.calibration_dir,
            num_calibration_images=options.num_calibration_images, progress=progress)
        return _from_converted(converted, source=source, cut_at=options.base_output)
    if path.endswith((".keras", ".h5", ".hdf5")):
        converted = _keras_base().convert_keras_base(
            path, output_layer=options.base_output, quantize=options.quantize,
            calibration_dir=options.calibration_dir,
            num_calibration_images=options.num_calibration_images, progress=progress)
        # The Keras cut is at a layer, before conversion (from_keras.py says why).
        return _from_converted(converted, source=source)
    data = user_files.read_file_bytes(path, "--base", "a .tflite file")
    model = model_io.read_model_bytes(data, source)
    return BaseSource(data, model, f"{user_files.printable(os.path.basename(path))} ({len(data) / 1e6:.2f} MB)",
                      synthetic_weights=False, cut_at=options.base_output, source=source)


def _keras_base():
    """Imported on demand: Keras costs seconds, and a .tflite base does not need it."""
    from tflite_transfer.compiler.base import from_keras  # noqa: PLC0415

    return from_keras


def _from_converted(converted, source: str, cut_at: str | None = None) -> BaseSource:
    model = model_io.read_model_bytes(converted.tflite, source)
    # Our Keras/SavedModel conversions calibrate (and the embedded base rescales) 0-255 pixels.
    return BaseSource(converted.tflite, model, converted.description,
                      converted.synthetic_weights, cut_at, source, image_range=(0.0, 255.0))
