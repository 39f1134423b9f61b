"""Opens a compiled model: checks its digest before anything parses the bytes (or, when no
digest is checked, the FlatBuffer's structure: runtime/model_structure.py), reads its
metadata (contract.ModelMetadata), loads the LiteRT interpreter (tf.lite as a fallback),
checks the signature contract, and wraps each signature so interpreter failures become one
project error naming the signature and the input shapes. Imports no TensorFlow unless LiteRT
is missing."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from tflite_transfer.runtime import contract, files, model_structure
from tflite_transfer.runtime.errors import (InvalidInputError, TransferError, UnsupportedModelError,
                                            VerificationError)

# What a parser of untrusted FlatBuffer bytes raises on damage (offsets out of range, wrong types).
_PARSE_ERRORS = (IndexError, ValueError, TypeError, AttributeError, KeyError, struct.error,
                 UnicodeDecodeError, OverflowError, RecursionError, MemoryError)


def new_interpreter(model_bytes: bytes, num_threads: int | None = None, xnnpack: bool = True,
                    preserve_all_tensors: bool = False):
    """(interpreter, its API's name): LiteRT, or tf.lite when LiteRT is missing; with the default
    XNNPACK delegate, or builtin kernels only. Every part of the project builds its Python
    interpreters here (the runtime, the compiler's checks). `preserve_all_tensors` keeps every
    intermediate readable (the interpreter then applies no default delegate)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: PLC0415
        name = "ai_edge_litert"
    except ImportError:
        try:
            import tensorflow as tf  # noqa: PLC0415
        except ImportError:
            raise TransferError("no TFLite interpreter found: pip install ai-edge-litert") from None
        Interpreter, OpResolverType, name = tf.lite.Interpreter, tf.lite.experimental.OpResolverType, "tf.lite"
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=model_bytes, num_threads=num_threads, experimental_op_resolver_type=resolver,
                       experimental_preserve_all_tensors=preserve_all_tensors), name


_schema = model_structure.schema


def check_digest(model_bytes: bytes, source: str) -> None:
    """Refuses a model whose `model_digest` does not match its bytes (runtime/SPEC.md#model-digest). A model
    without a digest field passes here; its metadata must then be contract version 1."""
    if contract.digest_matches(model_bytes) is False:
        raise VerificationError(
            f"{source}: the file does not match its model_digest (damaged in transfer or "
            "storage); copy or download it again, or recompile it (verify_digest=False skips "
            "this check for apps that verified the file elsewhere)")


def check_before_parsing(model_bytes: bytes, source: str, verify_digest: bool) -> None:
    """The digest (runtime/SPEC.md#model-digest) before any parser or the interpreter sees the
    bytes; when it is skipped (or the model has none), the FlatBuffer's structure instead:
    LiteRT aborts the process on some damaged files (double free, SIGSEGV), and a digest is
    what vouches that the compiler's structure checks still hold (runtime/model_structure.py)."""
    if verify_digest:
        check_digest(model_bytes, source)
    if not verify_digest or contract.find_digest(model_bytes) is None:
        model_structure.check_structure(model_bytes, source, dataflow=True)


def read_metadata(model_bytes: bytes, source: str) -> contract.ModelMetadata:
    """The compiler's metadata record, read straight from the FlatBuffer."""
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise InvalidInputError(f"{source}: not a TFLite model")
    try:
        model = _schema().Model.GetRootAs(model_bytes, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == contract.METADATA_KEY.encode():
                data = model.Buffers(entry.Buffer()).DataAsNumpy()
                return contract.ModelMetadata.from_json(bytes(np.asarray(data, np.uint8)), source)
    except _PARSE_ERRORS as error:
        raise InvalidInputError(f"{source}: corrupt TFLite file ({type(error).__name__} while "
                                "reading its metadata); copy or recompile it") from None
    raise UnsupportedModelError(f"{source}: not a tflite-transfer model (no "
                                f"'{contract.METADATA_KEY}' metadata); compile it with compile-transfer")


class Signature:
    """One signature runner; failures inside the interpreter become UnsupportedModelError."""

    def __init__(self, name: str, runner, source: str):
        self.name, self._runner, self._source = name, runner, source

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return self._runner(**inputs)
        except (RuntimeError, ValueError) as error:
            shapes = ", ".join(f"{name} {value.dtype}{list(value.shape)}" for name, value in inputs.items())
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
            raise UnsupportedModelError(
                f"{self._source}: signature '{self.name}' failed on {shapes or 'no inputs'}: "
                f"{reason[:300]} (the interpreter cannot run these inputs on this model)") from None

    def input_details(self) -> dict:
        return self._runner.get_input_details()

    def output_details(self) -> dict:
        return self._runner.get_output_details()


@dataclasses.dataclass(frozen=True)
class OpenedModel:
    interpreter: object
    interpreter_name: str
    metadata: contract.ModelMetadata
    signatures: dict[str, Signature]  # signature key -> wrapped runner
    source: str


class MetadataFacts:
    """What a model is, from its metadata record: shared by TransferModel and InferenceModel."""
    metadata: contract.ModelMetadata

    @property
    def num_classes(self) -> int:
        return self.metadata.num_outputs

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.labels)

    @property
    def classifies(self) -> bool:
        return self.metadata.label.class_ids or self.metadata.label.one_hot

    @property
    def image_batch(self) -> int | None:
        return self.metadata.image_batch


def read_model_bytes(path_or_bytes, num_threads: int | None) -> tuple[bytes, str]:
    """The model's bytes and the name errors use (a regular file only), with num_threads checked."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        model_bytes, source = bytes(path_or_bytes), "<bytes>"
    else:
        source = files.check_path(path_or_bytes, "model", InvalidInputError)
        model_bytes = files.read_regular_file(source, "model", InvalidInputError)
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                    or num_threads < 1):
        raise InvalidInputError(f"num_threads must be a positive int or None, got {num_threads!r}")
    return model_bytes, source


def cannot_load(error: Exception, source: str) -> InvalidInputError:
    """The interpreter's own RuntimeError/ValueError on loading, as one line of ours."""
    reason = next((line for line in str(error).splitlines() if line.strip()), "")
    return InvalidInputError(f"{source}: the interpreter cannot load it: {reason[:300]}")


def open_model(path_or_bytes, num_threads: int | None = None, verify_digest: bool = True) -> OpenedModel:
    model_bytes, source = read_model_bytes(path_or_bytes, num_threads)
    check_before_parsing(model_bytes, source, verify_digest)
    metadata = read_metadata(model_bytes, source)
    if verify_digest and metadata.contract_version >= 2 and contract.find_digest(model_bytes) is None:
        # Its metadata has a digest, but the file has no single digest field: a second one was
        # added (the check above could not know which to trust), so nothing was verified.
        raise VerificationError(
            f"{source}: a contract version {metadata.contract_version} model must carry exactly one "
            "model_digest field; copy or download it again, or recompile it")
    try:
        interpreter, name = new_interpreter(model_bytes, num_threads)
        signatures = _check_contract(interpreter, metadata, source)
    except (RuntimeError, ValueError) as error:
        raise cannot_load(error, source) from None
    return OpenedModel(interpreter, name, metadata, signatures, source)


def _check_contract(interpreter, metadata: contract.ModelMetadata, source: str) -> dict[str, Signature]:
    found = interpreter.get_signature_list()
    missing = [key for key in contract.SIGNATURES if key not in found]
    if missing and set(found) == {contract.INFER} and not metadata.state:
        raise UnsupportedModelError(
            f"{source}: an exported inference-only model (signature infer alone): run it with "
            "tflite_transfer.runtime.InferenceModel.open; only the trainable model trains")
    if missing:
        raise UnsupportedModelError(
            f"{source}: not a tflite-transfer model: missing signature(s) {', '.join(missing)}")
    for key, spec in metadata.signatures.items():  # exactly its tensor names (as the compiler checks)
        have_in, have_out = set(found[key]["inputs"]), set(found[key]["outputs"])
        if have_in != set(spec.inputs) or have_out != set(spec.outputs):
            absent = sorted((set(spec.inputs) - have_in) | (set(spec.outputs) - have_out))
            extra = sorted((have_in - set(spec.inputs)) | (have_out - set(spec.outputs)))
            raise UnsupportedModelError(
                f"{source}: signature '{key}' does not match the contract: lacks {absent or 'nothing'}, "
                f"has unexpected {extra or 'nothing'}; recompile the model")
    signatures = {key: Signature(key, interpreter.get_signature_runner(key), source)
                  for key in contract.SIGNATURES}
    for key in contract.SIGNATURES:
        batch = metadata.fixed_batch(key)
        first = next(iter(signatures[key].input_details().values()), None)
        declared = int(first["shape_signature"][0]) if first is not None and len(first["shape_signature"]) else None
        if batch is not None and declared != batch:  # the compiler makes fixed batches static
            raise UnsupportedModelError(
                f"{source}: signature '{key}' takes batch {declared} but the metadata says {batch}")
    _check_sizes_against_tensors(signatures, metadata, source)
    return signatures


def _check_sizes_against_tensors(signatures: dict[str, Signature], metadata: contract.ModelMetadata,
                                 source: str) -> None:
    """The metadata's sizes are the model's: bottleneck_size, num_outputs, the label and every
    state variable against the tensors of the signatures that carry them (a model opened without
    its digest may hold any numbers there; 1e30 used to reach numpy as a raw error)."""
    batch, names = None, metadata.tensor_names  # None: any leading batch dimension
    label = (batch, *metadata.label.shape)
    expected = [  # (signature, inputs or outputs, tensor, shape with None for the batch, dtype)
        (contract.TRAIN, "input", names.bottleneck, (batch, metadata.bottleneck_size), "float32"),
        (contract.LOAD, "output", names.bottleneck, (batch, metadata.bottleneck_size), "float32"),
        (contract.INFER, "output", names.output, (batch, metadata.num_outputs), None),
        (contract.TRAIN, "input", names.label, label, metadata.label.dtype),
        (contract.TRAIN_IMAGES, "input", names.label, label, metadata.label.dtype),
    ]
    expected += [(key, kind, entry.name, entry.shape, entry.dtype) for entry in metadata.state
                 for key, kind in ((contract.SAVE, "output"), (contract.RESTORE, "input"))]
    for key, kind, name, shape, dtype in expected:
        signature = signatures[key]
        details = (signature.input_details() if kind == "input" else signature.output_details())[name]
        actual = tuple(int(size) for size in details["shape_signature"])
        actual_dtype = np.dtype(details["dtype"]).name
        fits = len(actual) == len(shape) and all(want is None or have == want for want, have in zip(shape, actual))
        if not fits or (dtype is not None and actual_dtype != dtype):
            shown = ", ".join("batch" if size is None else str(size) for size in shape)
            raise UnsupportedModelError(
                f"{source}: the metadata describes {kind} '{name}' of signature '{key}' as "
                f"{dtype or 'any dtype'} [{shown}] but the model's tensor is {actual_dtype} {list(actual)}; "
                "the metadata is damaged or belongs to another model: recompile it")
