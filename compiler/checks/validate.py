"""The last check before anything is written: the final bytes, opened the way the runtime
opens them (metadata record, digest, exact signature contract) in the LiteRT interpreter, and
every signature run once at batch 1 and once at batch 3 (or at the batch the metadata fixes).

Structural audits read the model; this runs it. A fused model that parses and passes every
audit can still fail to run at a batch > 1 (a base with a constant [1, N] reshape), which only
running it shows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.compiler.errors import TransferError, VerificationError
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.interpreter import open_model

BATCHES = (1, 3)        # dynamic-batch signatures run at both; fixed-batch ones at their batch


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    interpreter: str
    runs: tuple[tuple[str, int], ...]       # (signature, batch) pairs run


def _image(details: dict, batch: int, rng: np.random.Generator, value_range=None) -> np.ndarray:
    """Inputs for the run: in the model's input range when known (else pixel-like 0..255)."""
    shape = (batch, *(int(d) for d in details["shape_signature"][1:]))
    dtype = np.dtype(details["dtype"])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    low, high = value_range or (0.0, 255.0)
    return (low + rng.random(shape) * (high - low)).astype(dtype)


def _label(metadata: contract.ModelMetadata, batch: int, rng: np.random.Generator) -> np.ndarray:
    if metadata.label.class_ids:
        return rng.integers(0, metadata.num_outputs, batch).astype(metadata.label.dtype)
    if metadata.label.one_hot:  # soft rows: >= 0, summing to 1
        return rng.dirichlet(np.ones(metadata.num_outputs), batch).astype(metadata.label.dtype)
    return rng.normal(size=(batch, *metadata.label.shape)).astype(metadata.label.dtype)


def _check(signature: str, batch: int, name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    value = np.asarray(value)
    if value.shape != shape or (value.dtype.kind == "f" and not np.isfinite(value).all()):
        raise VerificationError(
            f"the compiled model's '{signature}' at batch {batch} returned '{name}' "
            f"{value.dtype} {list(value.shape)}{'' if np.isfinite(value).all() else ' with NaN/Inf'}, "
            f"expected {list(shape)} finite values")


def validate_model_bytes(model_bytes: bytes) -> ValidationReport:
    """Opens the final bytes as the runtime does and runs every signature; raises
    VerificationError naming the signature and batch on any failure."""
    if contract.digest_matches(model_bytes) is not True:
        raise VerificationError("the compiled model's model_digest does not match its bytes")
    try:
        opened = open_model(model_bytes)
    except TransferError as error:
        raise VerificationError(f"the compiled model does not open in the runtime: {error}") from None
    metadata, signatures = opened.metadata, opened.signatures
    rng = np.random.default_rng(0)
    runs = []

    def run(signature: str, batch: int, **inputs) -> dict:
        try:
            outputs = signatures[signature](**inputs)  # interpreter failures: one TransferError line
        except TransferError as error:
            raise VerificationError(f"the compiled model's '{signature}' fails at batch {batch} in "
                                    f"{opened.interpreter_name}: {str(error).strip()[:300]}") from None
        runs.append((signature, batch))
        return outputs

    state = run(contract.SAVE, 1)
    for entry in metadata.state:
        _check(contract.SAVE, 1, entry.name, state[entry.name], entry.shape)
    run(contract.RESTORE, 1, **{name: np.asarray(value) for name, value in state.items()})
    run(contract.INITIALIZE, 1)
    learning_rate = np.asarray(state[contract.LEARNING_RATE])
    run(contract.SET_LEARNING_RATE, 1, **{contract.LEARNING_RATE: learning_rate})
    names = metadata.tensor_names
    image_details = signatures[contract.LOAD].input_details()[names.input]
    image = lambda batch: _image(image_details, batch, rng, metadata.input_range)  # noqa: E731
    for signature in (contract.LOAD, contract.INFER, contract.TRAIN, contract.TRAIN_IMAGES):
        fixed = metadata.fixed_batch(signature)
        for batch in (fixed,) if fixed else BATCHES:
            if signature == contract.LOAD:
                outputs = run(signature, batch, **{names.input: image(batch)})
                _check(signature, batch, names.bottleneck, outputs[names.bottleneck],
                       (batch, metadata.bottleneck_size))
            elif signature == contract.INFER:
                outputs = run(signature, batch, **{names.input: image(batch)})
                _check(signature, batch, names.output, outputs[names.output], (batch, metadata.num_outputs))
            else:
                first = (names.bottleneck, rng.random((batch, metadata.bottleneck_size), dtype=np.float32))
                if signature == contract.TRAIN_IMAGES:
                    first = (names.input, image(batch))
                outputs = run(signature, batch, **{first[0]: first[1], names.label: _label(metadata, batch, rng)})
                _check(signature, batch, names.loss, outputs[names.loss], (1,))
    return ValidationReport(opened.interpreter_name, tuple(runs))
