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

from tflite_transfer.runtime import contract, inputs, samples
from tflite_transfer.runtime.errors import UnsupportedModelError
from tflite_transfer.runtime.interpreter import (MetadataFacts, Signature, cannot_load, check_before_parsing,
                                                 new_interpreter, read_metadata, read_model_bytes)


class InferenceModel(MetadataFacts):
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
        model_bytes, source = read_model_bytes(path, num_threads)
        check_before_parsing(model_bytes, source, verify_digest)  # the digest, else the structure
        metadata = read_metadata(model_bytes, source)
        try:
            interpreter, name = new_interpreter(model_bytes, num_threads)
            found = interpreter.get_signature_list()
        except (RuntimeError, ValueError) as error:
            raise cannot_load(error, source) from None
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
