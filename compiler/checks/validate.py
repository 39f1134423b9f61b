"""The last check before anything is written: the final bytes, opened the way the runtime
opens them (metadata record, digest, exact signature contract) in the LiteRT interpreter, and
every signature run once at batch 1 and once at batch 3 (or at the batch the metadata fixes),
by a table with one row per contract signature (`ROWS`: how to build its inputs, what its
outputs must be) that must cover runtime/contract.py's SIGNATURES.

Structural audits read the model; this runs it. A fused model that parses and passes every
audit can still fail to run at a batch > 1 (a base with a constant [1, N] reshape), which only
running it shows.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

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


@dataclasses.dataclass
class Run:
    """What the rows read: the model's metadata, its image input, a seeded RNG, and the outputs
    of the signatures run so far (restore takes what save returned)."""
    metadata: contract.ModelMetadata
    image_details: dict
    rng: np.random.Generator
    outputs: dict = dataclasses.field(default_factory=dict)     # signature -> its first outputs

    @property
    def names(self) -> contract.TensorNames:
        return self.metadata.tensor_names

    def image(self, batch: int) -> np.ndarray:
        return _image(self.image_details, batch, self.rng, self.metadata.input_range)

    def label(self, batch: int) -> np.ndarray:
        return _label(self.metadata, batch, self.rng)


@dataclasses.dataclass(frozen=True)
class SignatureRow:
    """One contract signature: how to build its inputs at a batch, the outputs it must return
    (name -> shape), and whether it runs at every batch (BATCHES, or the batch the metadata
    fixes) or once (state signatures)."""
    inputs: Callable[[Run, int], dict[str, np.ndarray]]
    outputs: Callable[[Run, int], dict[str, tuple[int, ...]]]
    batched: bool


_SCALAR = (1,)   # the contract's scalars are shape [1]

# One row per signature of contract.SIGNATURES, in the order they run (restore needs save's outputs).
ROWS: dict[str, SignatureRow] = {
    contract.SAVE: SignatureRow(
        inputs=lambda run, batch: {},
        outputs=lambda run, batch: {entry.name: entry.shape for entry in run.metadata.state}, batched=False),
    contract.RESTORE: SignatureRow(
        inputs=lambda run, batch: {name: np.asarray(value) for name, value in run.outputs[contract.SAVE].items()},
        outputs=lambda run, batch: {contract.STEP: _SCALAR}, batched=False),
    contract.INITIALIZE: SignatureRow(
        inputs=lambda run, batch: {},
        outputs=lambda run, batch: {contract.STEP: _SCALAR}, batched=False),
    contract.SET_LEARNING_RATE: SignatureRow(
        inputs=lambda run, batch: {contract.LEARNING_RATE: np.asarray(run.outputs[contract.SAVE][contract.LEARNING_RATE])},
        outputs=lambda run, batch: {contract.LEARNING_RATE: _SCALAR}, batched=False),
    contract.LOAD: SignatureRow(
        inputs=lambda run, batch: {run.names.input: run.image(batch)},
        outputs=lambda run, batch: {run.names.bottleneck: (batch, run.metadata.bottleneck_size)}, batched=True),
    contract.INFER: SignatureRow(
        inputs=lambda run, batch: {run.names.input: run.image(batch)},
        outputs=lambda run, batch: {run.names.output: (batch, run.metadata.num_outputs)}, batched=True),
    contract.TRAIN: SignatureRow(
        inputs=lambda run, batch: {
            run.names.bottleneck: run.rng.random((batch, run.metadata.bottleneck_size), dtype=np.float32),
            run.names.label: run.label(batch)},
        outputs=lambda run, batch: {run.names.loss: _SCALAR}, batched=True),
    contract.TRAIN_IMAGES: SignatureRow(
        inputs=lambda run, batch: {run.names.input: run.image(batch), run.names.label: run.label(batch)},
        outputs=lambda run, batch: {run.names.loss: _SCALAR}, batched=True),
}


def check_rows_cover_the_contract(signatures: tuple[str, ...] | None = None) -> None:
    """Every contract signature has a row, and every row a contract signature: a signature
    added to the contract without a row would silently never be run."""
    signatures = contract.SIGNATURES if signatures is None else signatures
    missing = [name for name in signatures if name not in ROWS]
    unknown = [name for name in ROWS if name not in signatures]
    if missing or unknown:
        raise VerificationError(
            f"compiler/checks/validate.py: no row for the contract's signature(s) {missing}, rows for "
            f"signature(s) {unknown} the contract does not define; add a row (its inputs and outputs)")


def validate_model_bytes(model_bytes: bytes) -> ValidationReport:
    """Opens the final bytes as the runtime does and runs every signature by its row; raises
    VerificationError naming the signature and batch on any failure."""
    check_rows_cover_the_contract()
    if contract.digest_matches(model_bytes) is not True:
        raise VerificationError("the compiled model's model_digest does not match its bytes")
    try:
        opened = open_model(model_bytes)
    except TransferError as error:
        raise VerificationError(f"the compiled model does not open in the runtime: {error}") from None
    signatures = opened.signatures
    run = Run(opened.metadata, signatures[contract.LOAD].input_details()[opened.metadata.tensor_names.input],
              np.random.default_rng(0))
    runs = []
    base_state = {entry.name for entry in run.metadata.entries_with_role(contract.BASE_STATE)}
    for signature, row in ROWS.items():
        fixed = run.metadata.fixed_batch(signature)
        for batch in ((fixed,) if fixed else BATCHES) if row.batched else (1,):
            try:  # interpreter failures: one TransferError line
                outputs = signatures[signature](**row.inputs(run, batch))
            except TransferError as error:
                raise VerificationError(f"the compiled model's '{signature}' fails at batch {batch} in "
                                        f"{opened.interpreter_name}: {str(error).strip()[:300]}") from None
            for name, shape in row.outputs(run, batch).items():
                if name not in outputs:
                    raise VerificationError(f"the compiled model's '{signature}' returned no '{name}'")
                value = outputs[name]
                if name in base_state:  # a base's own state may start at -inf (a running maximum)
                    value = np.nan_to_num(value)
                _check(signature, batch, name, value, shape)
            run.outputs.setdefault(signature, outputs)
            runs.append((signature, batch))
    return ValidationReport(opened.interpreter_name, tuple(runs))
