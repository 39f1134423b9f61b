"""InferenceModel: runs a model `compile-transfer export` wrote (one subgraph, `infer` only, the
trained weights baked in as constants), numpy + LiteRT only.

    model = InferenceModel.open("personal.tflite")   # checks model_digest, then the signature
    probabilities = model.predict(images)            # the same image checks as TransferModel
    names = [model.labels[i] for i in probabilities.argmax(1)]

A trainable model is refused here (TransferModel opens it), and TransferModel refuses an
exported one, each naming the other.
"""

from __future__ import annotations

import numpy as np

from tflite_transfer.runtime import contract, files, inputs, samples
from tflite_transfer.runtime.errors import InvalidInputError, UnsupportedModelError
from tflite_transfer.runtime.interpreter import Signature, check_before_parsing, new_interpreter, read_metadata


class InferenceModel:
    """An exported inference-only model in the interpreter."""

    def __init__(self, interpreter, interpreter_name: str, metadata: contract.ModelMetadata,
                 infer: Signature, source: str):
        self._interpreter, self.interpreter_name = interpreter, interpreter_name
        self.metadata, self._infer, self._source = metadata, infer, source
        self.names = metadata.tensor_names
        self.input_spec = inputs.input_spec(metadata, infer.input_details()[self.names.input], source,
                                            contract.INFER)
        self.image_shape: tuple[int, ...] = self.input_spec.shape
        self.image_dtype = np.dtype(self.input_spec.dtype)

    @classmethod
    def open(cls, path, num_threads: int | None = None, verify_digest: bool = True) -> "InferenceModel":
        """Opens an exported model file (or its bytes); the file's model_digest is checked before
        any parser or the interpreter sees the bytes (verify_digest=False skips that)."""
        if isinstance(path, (bytes, bytearray, memoryview)):
            model_bytes, source = bytes(path), "<bytes>"
        else:
            source = files.check_path(path, "model", InvalidInputError)
            model_bytes = files.read_regular_file(source, "model", InvalidInputError)
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                        or num_threads < 1):
            raise InvalidInputError(f"num_threads must be a positive int or None, got {num_threads!r}")
        check_before_parsing(model_bytes, source, verify_digest)  # the digest, else the structure
        metadata = read_metadata(model_bytes, source)
        try:
            interpreter, name = new_interpreter(model_bytes, num_threads)
            found = interpreter.get_signature_list()
        except (RuntimeError, ValueError) as error:
            reason = next((line for line in str(error).splitlines() if line.strip()), "")
            raise InvalidInputError(f"{source}: the interpreter cannot load it: {reason[:300]}") from None
        if set(found) != {contract.INFER} or metadata.state:
            raise UnsupportedModelError(
                f"{source}: a trainable model (signatures {', '.join(sorted(found))}), not an exported "
                "one: open it with TransferModel.open, or export it with compile-transfer export")
        spec, names = found[contract.INFER], metadata.tensor_names
        if set(spec["inputs"]) != {names.input} or set(spec["outputs"]) != {names.output}:
            raise UnsupportedModelError(
                f"{source}: signature 'infer' takes {sorted(spec['inputs'])} and returns "
                f"{sorted(spec['outputs'])}, expected ['{names.input}'] -> ['{names.output}']")
        return cls(interpreter, name, metadata, Signature(contract.INFER, interpreter.get_signature_runner(
            contract.INFER), source), source)

    # What the model is.
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

    def predict(self, images) -> np.ndarray:
        """`infer` on a batch (or one image): probabilities [batch, classes] (predictions for a
        model trained on targets). Images are checked as TransferModel.predict checks them;
        a fixed image batch runs in padded chunks."""
        spec, name, output = self.input_spec, self.names.input, self.names.output
        images = inputs.model_input(images, name, spec.kind, spec.shape, np.dtype(spec.dtype), spec.range)
        if self.metadata.image_batch is None:
            return self._infer(**{name: images})[output]
        return np.concatenate([self._infer(**{name: chunk})[output][:real]
                               for chunk, real in samples.image_chunks(images, self.metadata.image_batch)])
