"""Opens a compiled model: the LiteRT interpreter (tf.lite as a fallback), its metadata, and
a check of the signature contract. Imports no TensorFlow unless LiteRT is missing."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from tflite_transfer.runtime.errors import InvalidInputError, TransferError, UnsupportedModelError

METADATA_KEY = "tflite_transfer"
CONTRACT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # signature: (inputs that must exist, outputs that must exist); save/restore are checked
    # against the state names of the metadata.
    "infer": (("image",), ()),
    "load": (("image",), ("bottleneck",)),
    "train": (("bottleneck", "label"), ("loss",)),
    "train_images": (("image", "label"), ("loss",)),
    "save": ((), ()),
    "restore": ((), ("step",)),
    "initialize": ((), ("step",)),
    "set_learning_rate": (("learning_rate",), ("learning_rate",)),
}


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # noqa: PLC0415
        return tf.lite.Interpreter, "tf.lite"
    except ImportError:
        raise TransferError("no TFLite interpreter found: pip install ai-edge-litert") from None


def _schema():
    try:
        from ai_edge_litert import schema_py_generated  # noqa: PLC0415
    except ImportError:
        from tensorflow.lite.python import schema_py_generated  # noqa: PLC0415
    return schema_py_generated


def read_metadata(model_bytes: bytes, source: str) -> dict:
    """The compiler's JSON metadata entry, read straight from the FlatBuffer."""
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise InvalidInputError(f"{source}: not a TFLite model")
    schema = _schema()
    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == METADATA_KEY.encode():
                data = model.Buffers(entry.Buffer()).DataAsNumpy()
                return json.loads(bytes(np.asarray(data, np.uint8)).decode())
    except (IndexError, ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{source}: corrupt TFLite file ({type(error).__name__})") from None
    raise UnsupportedModelError(
        f"{source}: not a tflite-transfer model (no '{METADATA_KEY}' metadata); compile it with compile-transfer")


@dataclasses.dataclass(frozen=True)
class OpenedModel:
    interpreter: object
    interpreter_name: str
    metadata: dict
    runners: dict            # signature key -> signature runner


def open_model(path_or_bytes: str | bytes, num_threads: int | None = None) -> OpenedModel:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        model_bytes, source = bytes(path_or_bytes), "<bytes>"
    else:
        source = str(path_or_bytes)
        if not os.path.isfile(source):
            raise InvalidInputError(f"model file '{source}' not found")
        with open(source, "rb") as handle:
            model_bytes = handle.read()
    metadata = read_metadata(model_bytes, source)
    interpreter_class, name = _interpreter_class()
    try:
        interpreter = interpreter_class(model_content=model_bytes, num_threads=num_threads)
    except ValueError as error:
        raise InvalidInputError(f"{source}: the interpreter cannot load it: {error}") from None
    runners = _check_contract(interpreter, metadata, source)
    return OpenedModel(interpreter, name, metadata, runners)


def _check_contract(interpreter, metadata: dict, source: str) -> dict:
    signatures = interpreter.get_signature_list()
    missing = [key for key in CONTRACT if key not in signatures]
    if missing:
        raise UnsupportedModelError(f"{source}: not a tflite-transfer model: missing signature(s) {', '.join(missing)}")
    state = set(metadata.get("state", {}))
    for key, (inputs, outputs) in CONTRACT.items():
        have_in, have_out = set(signatures[key]["inputs"]), set(signatures[key]["outputs"])
        need_in = set(inputs) | (state if key == "restore" else set())
        need_out = set(outputs) | (state if key == "save" else set())
        if not need_in <= have_in or not need_out <= have_out:
            absent = sorted((need_in - have_in) | (need_out - have_out))
            raise UnsupportedModelError(
                f"{source}: not a tflite-transfer model: signature '{key}' lacks {', '.join(absent)}")
    return {key: interpreter.get_signature_runner(key) for key in CONTRACT}
