"""Base sources: a .tflite file, a Keras file, a SavedModel directory, or the embedded
default (a MobileNetV2 built and int8-quantized here). All end as TFLite bytes."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from tflite_transfer.compiler.base import hosted_metadata
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
    # The values the base's input takes, when known (for images: the pixel range; the name is
    # from before inputs of any kind): our conversions' 0..255, a hosted base's normalization.
    image_range: tuple[float, float] | None = None


def load_base(options: BaseOptions, progress: Callable[[str], None] = print, interface=None) -> BaseSource:
    """`interface`: compiler/interface.py's InterfacePlan (calibration data, the stated input range)."""
    path = options.base
    calibration_data = getattr(interface, "calibration_data", None)
    stated_range = getattr(interface, "base_input_range", None)
    if path in (None, DEFAULT_BASE):
        from tflite_transfer.compiler.base import mobilenet  # noqa: PLC0415 (Keras: seconds to import)

        if calibration_data or stated_range:
            raise InvalidInputError("--calibration_data and --base_input_range apply to --base files; the "
                                    "embedded MobileNetV2 takes 0..255 pixels and calibrates on --calibration_dir")
        converted = mobilenet.build_default_mobilenet_v2(
            alpha=options.alpha, image_size=options.image_size, weights_file=options.base_weights,
            calibration_dir=options.calibration_dir,
            num_calibration_images=options.num_calibration_images, progress=progress,
            output_layer=options.base_output)
        return _from_converted(converted, source=DEFAULT_BASE)
    if options.base_weights:
        raise InvalidInputError("--base_weights applies to the embedded default base only")
    path, is_directory = user_files.check_file_or_directory(
        path, "--base", "a .tflite/.keras/.h5 file or a SavedModel directory")
    source = user_files.printable(path)
    if is_directory or path.endswith((".keras", ".h5", ".hdf5")):
        from tflite_transfer.compiler.base import from_keras  # noqa: PLC0415 (Keras: seconds to import)
        from tflite_transfer.compiler.base.conversion import Calibration  # noqa: PLC0415

        calibration = Calibration(options.calibration_dir, calibration_data, options.num_calibration_images,
                                  stated_range)
    if is_directory:
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise InvalidInputError(f"{source}: a directory base must be a SavedModel (no saved_model.pb)")
        converted = from_keras.convert_saved_model_base(path, quantize=options.quantize, progress=progress,
                                                        calibration=calibration)
        return _from_converted(converted, source=source, cut_at=options.base_output)
    if path.endswith((".keras", ".h5", ".hdf5")):
        converted = from_keras.convert_keras_base(path, output_layer=options.base_output, quantize=options.quantize,
                                                  progress=progress, calibration=calibration)
        # The Keras cut is at a layer, before conversion (from_keras.py says why).
        return _from_converted(converted, source=source)
    if calibration_data:
        raise InvalidInputError("--calibration_data applies to Keras/SavedModel bases (which the compiler "
                                "quantizes); a .tflite base is used as it is")
    data = user_files.read_file_bytes(path, "--base", "a .tflite file")
    model = model_io.read_model_bytes(data, source)
    return BaseSource(data, model, f"{user_files.printable(os.path.basename(path))} ({len(data) / 1e6:.2f} MB)",
                      synthetic_weights=False, cut_at=options.base_output, source=source,
                      image_range=hosted_metadata.input_value_range(model, source))


def _from_converted(converted, source: str, cut_at: str | None = None) -> BaseSource:
    model = model_io.read_model_bytes(converted.tflite, source)
    # Images: our conversions calibrate (and the embedded base rescales) 0-255 pixels, unless
    # --base_input_range says otherwise; other inputs: the stated range or not known.
    return BaseSource(converted.tflite, model, converted.description,
                      converted.synthetic_weights, cut_at, source, image_range=converted.input_range)
