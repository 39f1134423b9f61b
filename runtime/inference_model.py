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
from tflite_transfer.runtime.interpreter import Signature, check_digest, new_interpreter, read_metadata


class InferenceModel:
    """An exported inference-only model in the interpreter."""

    def __init__(self, interpreter, interpreter_name: str, metadata: contract.ModelMetadata,
                 infer: Signature, source: str):
        self._interpreter, self.interpreter_name = interpreter, interpreter_name
        self.metadata, self._infer, self._source = metadata, infer, source
        image = infer.input_details()[contract.IMAGE]
        self.image_shape: tuple[int, ...] = tuple(int(d) for d in image["shape_signature"][1:])
        self.image_dtype = np.dtype(image["dtype"])
        if not self.image_shape or min(self.image_shape) < 1:
            raise UnsupportedModelError(f"{source}: the image input has shape "
                                        f"{list(image['shape_signature'])}; expected [batch, sizes >= 1]")

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
        if verify_digest:
            check_digest(model_bytes, source)
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
        spec = found[contract.INFER]
        if set(spec["inputs"]) != {contract.IMAGE} or set(spec["outputs"]) != {metadata.output}:
            raise UnsupportedModelError(
                f"{source}: signature 'infer' takes {sorted(spec['inputs'])} and returns "
                f"{sorted(spec['outputs'])}, expected ['{contract.IMAGE}'] -> ['{metadata.output}']")
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
        return self.metadata.label.class_ids

    @property
    def image_batch(self) -> int | None:
        return self.metadata.image_batch

    def predict(self, images) -> np.ndarray:
        """`infer` on a batch (or one image): probabilities [batch, classes] (predictions for a
        model trained on targets). Images are checked as TransferModel.predict checks them;
        a fixed image batch runs in padded chunks."""
        images = inputs.images(images, self.image_shape, self.image_dtype, self.metadata.image_range)
        output = self.metadata.output
        if self.metadata.image_batch is None:
            return self._infer(**{contract.IMAGE: images})[output]
        return np.concatenate([self._infer(**{contract.IMAGE: chunk})[output][:real]
                               for chunk, real in samples.image_chunks(images, self.metadata.image_batch)])
