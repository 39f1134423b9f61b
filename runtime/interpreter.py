"""Opens a compiled model: the LiteRT interpreter (tf.lite as a fallback), its metadata, and
a check of the signature contract. Imports no TensorFlow unless LiteRT is missing."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tflite_transfer.runtime import contract
from tflite_transfer.runtime.contract import METADATA_KEY
from tflite_transfer.runtime.errors import InvalidInputError, TransferError, UnsupportedModelError

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


def read_metadata(model_bytes: bytes, source: str) -> contract.ModelMetadata:
    """The compiler's metadata record, read straight from the FlatBuffer (version-checked)."""
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise InvalidInputError(f"{source}: not a TFLite model")
    schema = _schema()
    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == METADATA_KEY.encode():
                data = bytes(np.asarray(model.Buffers(entry.Buffer()).DataAsNumpy(), np.uint8))
                break
        else:
            data = None
    except (IndexError, ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{source}: corrupt TFLite file ({type(error).__name__})") from None
    if data is None:
        raise UnsupportedModelError(
            f"{source}: not a tflite-transfer model (no '{METADATA_KEY}' metadata); compile it with compile-transfer")
    return contract.ModelMetadata.from_json(data, source)


@dataclasses.dataclass(frozen=True)
class OpenedModel:
    interpreter: object
    interpreter_name: str
    metadata: contract.ModelMetadata
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


def _check_contract(interpreter, metadata: contract.ModelMetadata, source: str) -> dict:
    """Every signature of the contract with exactly its tensor names (as the compiler checks)."""
    signatures = interpreter.get_signature_list()
    specs = metadata.signatures
    missing = [key for key in specs if key not in signatures]
    if missing:
        raise UnsupportedModelError(f"{source}: not a tflite-transfer model: missing signature(s) {', '.join(missing)}")
    for key, spec in specs.items():
        have_in, have_out = set(signatures[key]["inputs"]), set(signatures[key]["outputs"])
        if have_in != set(spec.inputs) or have_out != set(spec.outputs):
            absent = sorted((set(spec.inputs) - have_in) | (set(spec.outputs) - have_out))
            extra = sorted((have_in - set(spec.inputs)) | (have_out - set(spec.outputs)))
            raise UnsupportedModelError(
                f"{source}: signature '{key}' does not match the contract: lacks {absent or 'nothing'}, "
                f"has unexpected {extra or 'nothing'}; recompile the model")
    return {key: interpreter.get_signature_runner(key) for key in specs}
