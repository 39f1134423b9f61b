"""compile_transfer_model: base -> training head -> fuse -> verify -> bytes.

The CLI and the Python API both call this function; each pass is a plain function of the
previous one's result, and the structural checks run before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Callable

import numpy as np

from tflite_transfer.compiler import audit, batch, cut, fuse, heads, losses, model_io, op_versions, optimizers
from tflite_transfer.compiler import summary, training_graph, verify
from tflite_transfer.compiler.bases import BaseOptions, BaseSource, load_base
from tflite_transfer.compiler.errors import InvalidInputError, VerificationError

CONTRACT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class HeadOptions:
    head: str = "softmax"
    num_classes: int = 4                 # outputs of the head (classes, or targets for mse)
    labels: tuple[str, ...] = ()         # optional class names stored in the model
    loss: str = "softmax_cross_entropy"
    label_smoothing: float = 0.0
    optimizer: str = "sgd"
    learning_rate: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    weight_decay: float = 0.004
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class CompileResult:
    model_bytes: bytes
    base: BaseSource
    head: training_graph.TrainingHead
    op_audit: audit.OpAudit
    base_tensors_checked: int
    parity: verify.ParityReport | None
    metadata: dict
    signatures: dict          # key -> (inputs, outputs) as summary.TensorInfo lists
    versions: op_versions.VersionReport
    batch: batch.BatchReport = batch.BatchReport(None, None)

    @property
    def head_bytes(self) -> int:
        return len(self.head.tflite)


def _check_num_classes(head_options: HeadOptions) -> None:
    if head_options.num_classes < 1 or (head_options.loss != "mse" and head_options.num_classes < 2):
        raise InvalidInputError(f"--num_classes must be >= 2, got {head_options.num_classes}")


def build_training_head(head_options: HeadOptions, bottleneck_size: int) -> training_graph.TrainingHead:
    _check_num_classes(head_options)
    if head_options.labels and len(head_options.labels) != head_options.num_classes:
        raise InvalidInputError(f"{len(head_options.labels)} labels given for --num_classes={head_options.num_classes}")
    loss = losses.build_loss(head_options.loss, head_options.label_smoothing)
    optimizer = optimizers.build_optimizer(
        head_options.optimizer, head_options.learning_rate, head_options.momentum,
        head_options.nesterov, head_options.beta_1, head_options.beta_2, head_options.epsilon,
        head_options.weight_decay)
    head = heads.build_head(head_options.head, bottleneck_size, head_options.num_classes, head_options.seed)
    return training_graph.build_training_head(head, loss, optimizer)


def fingerprint(contract: dict, initial_state: dict[str, np.ndarray]) -> str:
    """Identifies a compiled model for checkpoints: its contract and initial weights."""
    digest = hashlib.sha256(json.dumps(contract, sort_keys=True).encode())
    for name in sorted(initial_state):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(initial_state[name]).tobytes())
    return digest.hexdigest()


def _metadata(base: BaseSource, prepared: cut.PreparedBase, head: training_graph.TrainingHead,
              head_options: HeadOptions) -> dict:
    state = {name: {"shape": list(value.shape), "dtype": str(value.dtype)}
             for name, value in head.initial_state.items()}
    contract = {
        "contract_version": CONTRACT_VERSION,
        "signatures": list(fuse.SIGNATURES),
        "bottleneck_size": prepared.bottleneck_size,
        "num_outputs": head.head.num_outputs,
        "loss": head.loss.name,
        "output": head.loss.output_name,
        "state": state,
    }
    return {
        "format": "tflite-transfer",
        **contract,
        "fingerprint": fingerprint(contract, head.initial_state),
        "labels": list(head_options.labels),
        "label_smoothing": head.loss.label_smoothing,
        "head": {"kind": head.head.kind, "description": head.head.description},
        "optimizer": dataclasses.asdict(head.optimizer),
        "base": {"description": base.description, "synthetic_weights": base.synthetic_weights},
        "image_range": list(base.image_range) if base.image_range else None,
    }


def expected_contract(head: training_graph.TrainingHead) -> dict[str, tuple[list[str], list[str]]]:
    state = list(head.initial_state)
    return {
        "infer": (["image"], [head.loss.output_name]),
        "load": (["image"], ["bottleneck"]),
        "train": (["bottleneck", "label"], ["loss"]),
        "train_images": (["image", "label"], ["loss"]),
        "save": ([], state),
        "restore": (state, [training_graph.STEP]),
        "initialize": ([], [training_graph.STEP]),
        "set_learning_rate": ([training_graph.LEARNING_RATE], [training_graph.LEARNING_RATE]),
    }


def validate_options(base_options: BaseOptions, head_options: HeadOptions, output: str) -> None:
    """Cheap checks of flag values, before minutes of conversion are spent."""
    _check_num_classes(head_options)
    losses.build_loss(head_options.loss, head_options.label_smoothing)
    optimizers.build_optimizer(
        head_options.optimizer, head_options.learning_rate, head_options.momentum,
        head_options.nesterov, head_options.beta_1, head_options.beta_2, head_options.epsilon,
        head_options.weight_decay)
    if head_options.head.partition(":")[0] not in heads.HEADS:
        heads.build_head(head_options.head, 1, head_options.num_classes)  # raises the clear error
    if base_options.alpha <= 0 or base_options.image_size < 32:
        raise InvalidInputError("--alpha must be > 0 and --image_size >= 32")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise InvalidInputError(f"--output directory '{directory}' does not exist")


def compile_transfer_model(base_options: BaseOptions, head_options: HeadOptions,
                           verify_steps: int = 10, verify_tolerance: float = 1e-5,
                           progress: Callable[[str], None] = print,
                           batch_options: batch.BatchOptions = batch.BatchOptions()) -> CompileResult:
    base = load_base(base_options, progress)
    return compile_from_base(base, base_options.base_output, head_options, verify_steps,
                             verify_tolerance, progress, batch_options)


def compile_from_base(base: BaseSource, base_output: str | None, head_options: HeadOptions,
                      verify_steps: int = 10, verify_tolerance: float = 1e-5,
                      progress: Callable[[str], None] = print,
                      batch_options: batch.BatchOptions = batch.BatchOptions()) -> CompileResult:
    prepared = cut.prepare_base(base.model, None if base.cut_applied else base_output, base.source)
    progress("building and converting the training head")
    head = build_training_head(head_options, prepared.bottleneck_size)
    metadata = _metadata(base, prepared, head, head_options)
    fused = fuse.fuse_base_and_head(prepared, model_io.read_model_bytes(head.tflite, "head"),
                                    json.dumps(metadata, sort_keys=True))
    op_audit = audit.audit_ops(fused.model)
    checked = audit.check_base_preserved(base.model, prepared.entry_subgraph, fused.model,
                                         fused.base_subgraph, prepared.kept_tensor_count, base.source)
    audit.check_contract(fused.model, expected_contract(head))
    # Batches: a fixed-batch-of-1 base made batch-agnostic where exact (else images run one at
    # a time); static signature batches (--batch; LiteRT.js needs them); both in the metadata.
    model, batch_report = batch.static_batches(fused.model, fused.base_subgraph, prepared.kept_tensor_count,
                                               batch_options, base.source)
    metadata = {**metadata, "image_batch": batch_report.image_batch, "train_batch": batch_report.train_batch}
    # After the base check (which compares op versions with the user's file): every op at the
    # lowest version its kernel semantics need, so older runtimes load the model, and a
    # min_runtime_version metadata that says what the model really needs.
    versions = op_versions.lower_op_versions(model)
    op_versions.set_min_runtime_version(model, versions.min_runtime_version)
    model_bytes = model_io.append_associated_files(model_io.write_model_bytes(model),
                                                   model_io.associated_files(base.tflite))
    parity = None
    if verify_steps:
        progress(f"verifying {verify_steps} train steps against TensorFlow eager")
        parity = verify.verify_training(model_bytes, head, steps=verify_steps,
                                        batch_size=batch_report.train_batch or verify.DEFAULT_BATCH)
        if not parity.passed(verify_tolerance):
            raise VerificationError(
                f"train steps differ from the TensorFlow reference: relative weight difference "
                f"{parity.max_relative_difference:.2e} > {verify_tolerance:.0e} "
                f"(worst variable: {max(parity.per_variable, key=parity.per_variable.get)})")
    return CompileResult(model_bytes, base, head, op_audit, checked, parity, metadata,
                         summary.describe_signatures(model), versions, batch_report)


def write_atomically(path: str, data: bytes) -> None:
    """Writes via a temporary file in the same directory, so no partial file is ever left."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InvalidInputError(f"output directory '{directory}' does not exist")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".tflite")
    try:
        with os.fdopen(handle, "wb") as output:
            output.write(data)
            output.flush()
            os.fsync(output.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
