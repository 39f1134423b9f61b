"""compile_transfer_model: the options -> one validated plan -> an ordered list of passes ->
the model's bytes.

The plan is built and validated once from the options (`make_plan`); nothing downstream checks
a flag again. Each pass is a plain function `(plan, build) -> build` over one frozen `Build`
record and runs in the order of `PASSES`: the model is changed only up to `serialize`, which
writes the bytes and stamps the model digest as the last change; the audits, the run of every
signature and `--verify` then check those final bytes, and the CLI writes them only if all pass.
Adding a pass is one function and one line in `PASSES`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.passes import batch, cut, fuse, model_input, op_versions
from tflite_transfer.compiler.head import heads, losses, optimizers
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.cli import summary
from tflite_transfer.compiler.head import training_graph
from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.checks import validate, verify
from tflite_transfer.compiler.base.sources import BaseSource, load_base
from tflite_transfer.compiler.errors import InvalidInputError, VerificationError
from tflite_transfer.compiler.passes.metadata import build_metadata
from tflite_transfer.compiler.options import (DEFAULT_NUM_CLASSES, DEFAULT_VERIFY_STEPS, DEFAULT_VERIFY_TOLERANCE,
                                              BaseOptions, HeadOptions, InterfaceOptions)
from tflite_transfer.compiler.interface import InterfacePlan, check_interface_options
from tflite_transfer.runtime import contract

Progress = Callable[[str], None]
__all__ = ["BaseOptions", "HeadOptions", "InterfaceOptions", "CompilePlan", "CompileResult", "make_plan",
           "compile_transfer_model", "compile_from_base", "write_atomically"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompilePlan:
    """Everything a compile needs, validated: built once by make_plan."""
    head: str                            # the --head flag (its builder needs the bottleneck size)
    num_classes: int
    labels: tuple[str, ...]
    loss: losses.LossSpec
    optimizer: optimizers.OptimizerSpec
    seed: int
    verify_steps: int                    # 0: no --verify
    verify_tolerance: float
    batch: batch.BatchOptions            # fixed signature batches (--batch); default any
    interface: InterfacePlan             # names, input range, label format, adapter (compiler/interface.py)


def make_plan(head_options: HeadOptions, *, verify_steps: int = DEFAULT_VERIFY_STEPS,
              verify: bool = True, verify_tolerance: float = DEFAULT_VERIFY_TOLERANCE,
              batch_options: batch.BatchOptions = batch.BatchOptions(),
              interface_options: InterfaceOptions = InterfaceOptions()) -> CompilePlan:
    """Validates every head, loss, optimizer and check option once (cheap: before minutes of
    conversion are spent). `verify=False` (--noverify) runs no train steps, but a bad
    --verify_steps is still refused: a flag value is valid or not whatever else is given."""
    labels = tuple(head_options.labels)
    num_classes = head_options.num_classes
    if num_classes is None:
        num_classes = len(labels) or DEFAULT_NUM_CLASSES
    loss = losses.build_loss(head_options.loss, head_options.label_smoothing)
    interface = check_interface_options(interface_options, loss.labels_are_class_ids, loss.name)
    loss = losses.build_loss(head_options.loss, head_options.label_smoothing, interface.label_format)
    losses.check_num_outputs(loss, num_classes)
    if labels and len(labels) != num_classes:
        raise InvalidInputError(f"{len(labels)} labels given for --num_classes={num_classes}")
    optimizer = optimizers.build_optimizer(
        head_options.optimizer, head_options.learning_rate, head_options.momentum,
        head_options.nesterov, head_options.beta_1, head_options.beta_2, head_options.epsilon,
        head_options.weight_decay)
    if head_options.head.partition(":")[0] not in heads.HEADS:
        heads.build_head(head_options.head, 1, num_classes)  # raises the clear error
    if verify_steps < 0:
        raise InvalidInputError(f"--verify_steps must be >= 0, got {verify_steps}")
    if not (verify_tolerance > 0 and math.isfinite(verify_tolerance)):
        raise InvalidInputError(f"--verify_tolerance must be a finite number > 0, got {verify_tolerance}")
    return CompilePlan(head=head_options.head, num_classes=num_classes, labels=labels, loss=loss,
                       optimizer=optimizer, seed=head_options.seed, verify_steps=verify_steps if verify else 0,
                       verify_tolerance=verify_tolerance, batch=batch_options, interface=interface)


def check_base_options(base_options: BaseOptions, output: str | None = None) -> None:
    """Cheap checks of the base options, the files they name and the output location
    (user_files.py), before minutes of conversion are spent."""
    if not (base_options.alpha > 0 and math.isfinite(base_options.alpha)):
        raise InvalidInputError(f"--alpha must be a finite number > 0, got {base_options.alpha}")
    if base_options.image_size < 32:
        raise InvalidInputError(f"--image_size must be >= 32, got {base_options.image_size}")
    if base_options.num_calibration_images < 1:
        raise InvalidInputError(f"--num_calibration_images must be >= 1, got {base_options.num_calibration_images}")
    if base_options.calibration_dir is not None:
        user_files.check_directory(base_options.calibration_dir, "--calibration_dir",
                                   "a folder of .jpg/.png/.bmp images")
    if base_options.base_weights is not None:
        user_files.check_regular_file(base_options.base_weights, "--base_weights",
                                      "a .keras/.h5/.weights.h5 file")
    if output is not None:
        user_files.check_output_file(output)


@dataclasses.dataclass(frozen=True)
class Build:
    """What the passes have made so far; each pass fills in its fields."""
    base: BaseSource
    prepared: cut.PreparedBase | None = None
    input: model_input.InputPlan | None = None
    head: training_graph.TrainingHead | None = None
    metadata: contract.ModelMetadata | None = None
    fused: fuse.FusedModel | None = None
    batch: batch.BatchReport | None = None
    versions: op_versions.VersionReport | None = None
    model_bytes: bytes | None = None
    op_audit: audit.OpAudit | None = None
    base_tensors_checked: int = 0
    validation: validate.ValidationReport | None = None
    parity: verify.ParityReport | None = None


# The passes, in order. Up to `serialize` they change the model; after it they only check.
def prepare_base(plan: CompilePlan, build: Build) -> Build:
    """The base cut and adapted (cut.py), and the model's input planned (model_input.py)."""
    prepared = cut.prepare_base(build.base.model, build.base.cut_at, build.base.source,
                                plan.interface.bottleneck_adapter)
    entry = prepared.model.subgraphs[prepared.entry_subgraph]
    input_plan = model_input.plan_input(entry.tensors[entry.inputs[0]], build.base.image_range,
                                        plan.interface.base_input_range, plan.interface.input_range,
                                        build.base.source)
    return dataclasses.replace(build, prepared=prepared, input=input_plan)


def build_head(plan: CompilePlan, build: Build) -> Build:
    head_spec = heads.build_head(plan.head, build.prepared.bottleneck_size, plan.num_classes, plan.seed)
    # With fixed signature batches the wide layers' forward op is chosen statically (no IF).
    dispatch = training_graph.forward_dispatch(not plan.batch.dynamic, plan.batch.train_batch)
    head = training_graph.build_training_head(head_spec, plan.loss, plan.optimizer, dispatch)
    names = plan.interface.tensor_names(build.input.spec.kind, plan.loss.output_name)
    metadata = build_metadata(base=build.base, bottleneck_size=build.prepared.bottleneck_size,
                              training_head=head, labels=plan.labels, image_batch=plan.batch.image_batch,
                              train_batch=plan.batch.train_batch, input_spec=build.input.spec, names=names,
                              adapter=build.prepared.adapter)
    return dataclasses.replace(build, head=head, metadata=metadata)


def fuse_model(plan: CompilePlan, build: Build) -> Build:
    head_model = model_io.read_model_bytes(build.head.tflite, "head")
    return dataclasses.replace(build, fused=fuse.fuse_base_and_head(
        build.prepared, head_model, build.metadata.to_json(), build.metadata.tensor_names, build.input))


def fix_batches(plan: CompilePlan, build: Build) -> Build:
    """A fixed-batch-of-1 base made batch-agnostic where that is exact (else its images run one
    at a time: image_batch 1), then static signature batches (--batch; LiteRT.js needs them);
    both recorded in the metadata. When the base is rewritten, the base-preserved check runs
    here on the fused model, just before the rewrite (batch_check proves the rewrite itself)."""
    model, report = batch.static_batches(build.fused.model, build.fused.base_subgraph,
                                         build.prepared.kept_tensor_count, plan.batch, build.base.source)
    checked = build.base_tensors_checked
    if report.base_rewritten:
        checked = _check_base_preserved(plan, build, build.fused.model, fixed_batch=None)
    metadata = dataclasses.replace(build.metadata, image_batch=report.image_batch, train_batch=report.train_batch)
    return dataclasses.replace(build, fused=dataclasses.replace(build.fused, model=model), batch=report,
                               metadata=metadata, base_tensors_checked=checked)


def _check_base_preserved(plan: CompilePlan, build: Build, model, fixed_batch: int | None) -> int:
    return audit.check_base_preserved(build.base.model, build.prepared.entry_subgraph, model,
                                      build.fused.base_subgraph, build.prepared.kept_tensor_count,
                                      build.base.source, fixed_batch=fixed_batch)


def lower_op_versions(plan: CompilePlan, build: Build) -> Build:
    """Every op at the lowest version its kernel needs, so older runtimes load the model, and
    a min_runtime_version that says what it really needs. Mutates the fused model: its last
    user was fuse."""
    return dataclasses.replace(build, versions=op_versions.lower_and_declare(build.fused.model))


def serialize(plan: CompilePlan, build: Build) -> Build:
    """The final bytes: FlatBuffer, the base's associated files, the digest stamped last."""
    model_bytes = model_io.append_associated_files(model_io.write_model_bytes(build.fused.model),
                                                   model_io.associated_files(build.base.tflite, build.base.source))
    return dataclasses.replace(build, model_bytes=contract.stamp_digest(model_bytes))


def audit_final_model(plan: CompilePlan, build: Build) -> Build:
    """Builtin ops only, the base unchanged, the exact signature contract: on the final bytes."""
    final = model_io.read_model_bytes(build.model_bytes, "compiled model")
    op_audit = audit.audit_ops(final)
    checked = build.base_tensors_checked
    if not build.batch.base_rewritten:
        checked = _check_base_preserved(plan, build, final, fixed_batch=build.batch.image_batch)
    audit.check_contract(final, build.metadata.signatures)
    return dataclasses.replace(build, op_audit=op_audit, base_tensors_checked=checked)


def run_every_signature(plan: CompilePlan, build: Build) -> Build:
    return dataclasses.replace(build, validation=validate.validate_model_bytes(build.model_bytes))


def verify_training(plan: CompilePlan, build: Build) -> Build:
    if not plan.verify_steps:
        return build
    parity = verify.verify_training(build.model_bytes, build.head, steps=plan.verify_steps,
                                    batch_size=plan.batch.train_batch or verify.DEFAULT_BATCH)
    if not parity.passed(plan.verify_tolerance):
        raise VerificationError(
            f"train steps differ from the TensorFlow reference: relative weight difference "
            f"{parity.max_relative_difference:.2e} > {plan.verify_tolerance:.0e} "
            f"(worst variable: {max(parity.per_variable, key=parity.per_variable.get)})")
    return dataclasses.replace(build, parity=parity)


@dataclasses.dataclass(frozen=True)
class Pass:
    name: str                               # shown as progress
    run: Callable[[CompilePlan, Build], Build]


PASSES: tuple[Pass, ...] = (
    Pass("cutting the base at its bottleneck", prepare_base),
    Pass("building and converting the training head", build_head),
    Pass("fusing base and head", fuse_model),
    Pass("making the signature batches batch-agnostic or fixed", fix_batches),
    Pass("lowering op versions", lower_op_versions),
    Pass("writing the model bytes", serialize),
    Pass("auditing the final model", audit_final_model),
    Pass("running every signature at batch 1 and 3", run_every_signature),
    Pass("verifying train steps against TensorFlow eager", verify_training),
)


@dataclasses.dataclass(frozen=True)
class CompileResult:
    model_bytes: bytes
    base: BaseSource
    head: training_graph.TrainingHead
    op_audit: audit.OpAudit
    base_tensors_checked: int
    parity: verify.ParityReport | None
    metadata: contract.ModelMetadata        # as written, except model_digest (the placeholder)
    signatures: dict                        # key -> (inputs, outputs) as summary.TensorInfo lists
    versions: op_versions.VersionReport
    validation: validate.ValidationReport
    batch: batch.BatchReport

    @property
    def head_bytes(self) -> int:
        return len(self.head.tflite)


def run_passes(plan: CompilePlan, base: BaseSource, progress: Progress = print) -> CompileResult:
    build = Build(base)
    for step in PASSES:
        if step.run is not verify_training or plan.verify_steps:
            progress(step.name)
        build = step.run(plan, build)
    final = model_io.read_model_bytes(build.model_bytes, "compiled model")
    return CompileResult(build.model_bytes, base, build.head, build.op_audit, build.base_tensors_checked,
                         build.parity, build.metadata, summary.describe_signatures(final), build.versions,
                         build.validation, build.batch)


def compile_transfer_model(base_options: BaseOptions, head_options: HeadOptions, *,
                           verify_steps: int = DEFAULT_VERIFY_STEPS,
                           verify_tolerance: float = DEFAULT_VERIFY_TOLERANCE,
                           batch_options: batch.BatchOptions = batch.BatchOptions(),
                           interface_options: InterfaceOptions = InterfaceOptions(),
                           progress: Progress = print) -> CompileResult:
    plan = make_plan(head_options, verify_steps=verify_steps, verify_tolerance=verify_tolerance,
                     batch_options=batch_options, interface_options=interface_options)
    check_base_options(base_options)
    return run_passes(plan, load_base(base_options, progress, plan.interface), progress)


def compile_from_base(base: BaseSource, head_options: HeadOptions, *,
                      verify_steps: int = DEFAULT_VERIFY_STEPS,
                      verify_tolerance: float = DEFAULT_VERIFY_TOLERANCE,
                      batch_options: batch.BatchOptions = batch.BatchOptions(),
                      interface_options: InterfaceOptions = InterfaceOptions(),
                      progress: Progress = print) -> CompileResult:
    plan = make_plan(head_options, verify_steps=verify_steps, verify_tolerance=verify_tolerance,
                     batch_options=batch_options, interface_options=interface_options)
    return run_passes(plan, base, progress)


def write_atomically(path: str, data: bytes) -> None:
    """Writes the model atomically (user_files.py: the output checked first, OS errors as one
    line; runtime/files.py: no partial file, stale temporaries removed, umask, symlinks)."""
    user_files.write_atomically(path, data)
