"""compile_transfer_model: the options -> one validated plan -> an ordered list of passes ->
the model's bytes.

The plan is built and validated once from the options (`make_plan`, compiler/plan.py, before
TensorFlow is needed); nothing downstream checks a flag again. Each pass is a plain function
`(plan, build) -> build` over one frozen `Build` record and runs in the order of `PASSES`: the model is changed only up to `serialize`, which
writes the bytes and stamps the model digest as the last change; the audits, the run of every
signature and `--verify` then check those final bytes, and the CLI writes them only if all pass.
Adding a pass is one function and one line in `PASSES`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.base.sources import BaseSource, load_base
from tflite_transfer.compiler.checks import audit, reproduction, validate, verifier_rules, verify
from tflite_transfer.compiler.cli import summary
from tflite_transfer.compiler.errors import InvalidInputError, VerificationError
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.head import heads, training_graph
from tflite_transfer.compiler.options import (DEFAULT_VERIFY_STEPS, DEFAULT_VERIFY_TOLERANCE, BaseOptions, HeadOptions,
                                              InterfaceOptions)
from tflite_transfer.compiler.passes import base_state, batch, cut, feature_scale, fuse, model_input, op_versions
from tflite_transfer.compiler.passes.metadata import build_metadata, write_metadata
from tflite_transfer.compiler.plan import CompilePlan, check_base_options, make_plan
from tflite_transfer.runtime import contract

Progress = Callable[[str], None]
__all__ = ["BaseOptions", "HeadOptions", "InterfaceOptions", "CompilePlan", "CompileResult", "make_plan",
           "check_base_options", "compile_transfer_model", "compile_from_base", "write_atomically"]


@dataclasses.dataclass(frozen=True)
class Build:
    """What the passes have made so far; each pass fills in its fields."""
    base: BaseSource
    prepared: cut.PreparedBase | None = None
    input: model_input.InputPlan | None = None
    feature_scale: feature_scale.FeatureScale | None = None
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
    reproduction: reproduction.ReproductionReport | None = None


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


def measure_features(plan: CompilePlan, build: Build) -> Build:
    """The largest |bottleneck|^2 on synthetic inputs (feature_scale.py): the default learning
    rate and the stable bound the summary prints."""
    try:
        scale = feature_scale.measure(build.prepared, build.input.spec.base_range, plan.seed)
    except (RuntimeError, ValueError) as error:
        if plan.learning_rate_from_features:
            raise InvalidInputError(f"{build.base.source}: the bottleneck scale cannot be measured to choose "
                                    f"the learning rate ({str(error).strip().splitlines()[0]}); "
                                    "pass --learning_rate") from None
        scale = None
    return dataclasses.replace(build, feature_scale=scale)


def build_head(plan: CompilePlan, build: Build) -> Build:
    head_spec = heads.build_head(plan.head, build.prepared.bottleneck_size, plan.num_classes, plan.seed)
    # With fixed signature batches the wide layers' forward op is chosen statically (no IF).
    dispatch = training_graph.forward_dispatch(not plan.batch.dynamic, plan.batch.train_batch)
    optimizer = plan.optimizer
    if plan.learning_rate_from_features:
        optimizer = dataclasses.replace(optimizer, learning_rate=feature_scale.default_learning_rate(
            build.feature_scale, plan.loss.name, plan.num_classes, optimizer.name,
            float(optimizer.hyper_parameters.get("momentum", 0.0))))
    head = training_graph.build_training_head(head_spec, plan.loss, optimizer, dispatch)
    base_state.check_state_names(build.prepared.state, head.state_names, build.base.source)
    names = plan.interface.tensor_names(build.input.spec.kind, plan.loss.output_name)
    metadata = build_metadata(base=build.base, bottleneck_size=build.prepared.bottleneck_size,
                              training_head=head, labels=plan.labels, image_batch=plan.batch.image_batch,
                              train_batch=plan.batch.train_batch, input_spec=build.input.spec, names=names,
                              adapter=build.prepared.adapter, base_state=build.prepared.state.entries())
    if build.feature_scale is not None:
        metadata = dataclasses.replace(metadata, bottleneck_max_norm2=build.feature_scale.max_norm2)
    return dataclasses.replace(build, head=head, metadata=metadata)


def fuse_model(plan: CompilePlan, build: Build) -> Build:
    head_model = model_io.read_model_bytes(build.head.tflite, "head")
    fused = fuse.fuse_base_and_head(build.prepared, head_model, build.metadata.tensor_names, build.input)
    # A stateful base's variables join save/restore/initialize (passes/base_state.py).
    return dataclasses.replace(build, fused=base_state.expose_in_state_signatures(fused, build.prepared.state))


def fix_batches(plan: CompilePlan, build: Build) -> Build:
    """A fixed-batch-of-1 base made batch-agnostic where that is exact (else its images run one
    at a time: image_batch 1), then static signature batches (--batch; LiteRT.js needs them);
    both recorded in the metadata. When the base is rewritten, the base-preserved check runs
    here on the fused model, just before the rewrite (batch_check proves the rewrite itself)."""
    if build.prepared.state.variables:  # its state advances at its own batch: no rewrite
        model, report = base_state.fixed_batches(build.fused.model, build.prepared.state, plan.batch,
                                                 build.base.source)
    else:
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
    """The final bytes: the metadata record written (once), the FlatBuffer, the base's
    associated files, the digest stamped last."""
    write_metadata(build.fused.model, build.metadata)
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


def check_verifier_rules(plan: CompilePlan, build: Build) -> Build:
    """What TFLite's flatbuffer verifier checks (MediaPipe and careful C++ apps run it)."""
    verifier_rules.check_verifier_rules(build.model_bytes, "compiled model")
    return build


def run_every_signature(plan: CompilePlan, build: Build) -> Build:
    return dataclasses.replace(build, validation=validate.validate_model_bytes(build.model_bytes))


def check_reproduction(plan: CompilePlan, build: Build) -> Build:
    """The compiled `load` against the user's original file at the cut, over a sequence of
    calls, bit for bit under the same kernels (checks/reproduction.py)."""
    report = reproduction.check_load_reproduces_base(
        build.model_bytes, build.base.tflite, build.base.model, build.prepared.entry_subgraph,
        build.prepared.cut_in_original, build.input.spec.base_range, bool(build.prepared.state.variables),
        build.base.source, build.metadata.tensor_names,
        build.prepared.adapter["kind"] if build.prepared.adapter else None, build.input)
    return dataclasses.replace(build, reproduction=report)


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
    Pass("measuring the bottleneck scale", measure_features),
    Pass("building and converting the training head", build_head),
    Pass("fusing base and head", fuse_model),
    Pass("making the signature batches batch-agnostic or fixed", fix_batches),
    Pass("lowering op versions", lower_op_versions),
    Pass("writing the model bytes", serialize),
    Pass("auditing the final model", audit_final_model),
    Pass("checking TFLite's flatbuffer verifier rules", check_verifier_rules),
    Pass("running every signature at batch 1 and 3", run_every_signature),
    Pass("proving `load` reproduces the original base at its cut over 4 calls", check_reproduction),
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
    feature_scale: feature_scale.FeatureScale | None = None
    reproduction: reproduction.ReproductionReport | None = None

    @property
    def head_bytes(self) -> int:
        return len(self.head.tflite)


# Called after every pass with the pass and what the passes have made so far: tests run the
# structural checks there (tests/pass_checks.py), so a broken graph is caught where it is made.
AfterPass = Callable[[Pass, Build], None]


def run_passes(plan: CompilePlan, base: BaseSource, progress: Progress = print,
               after_pass: AfterPass | None = None) -> CompileResult:
    build = Build(base)
    for step in PASSES:
        if step.run is not verify_training or plan.verify_steps:
            progress(step.name)
        build = step.run(plan, build)
        if after_pass is not None:
            after_pass(step, build)
    final = model_io.read_model_bytes(build.model_bytes, "compiled model")
    return CompileResult(build.model_bytes, base, build.head, build.op_audit, build.base_tensors_checked,
                         build.parity, build.metadata, summary.describe_signatures(final), build.versions,
                         build.validation, build.batch, build.feature_scale, build.reproduction)


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
                      progress: Progress = print, after_pass: AfterPass | None = None) -> CompileResult:
    plan = make_plan(head_options, verify_steps=verify_steps, verify_tolerance=verify_tolerance,
                     batch_options=batch_options, interface_options=interface_options)
    return run_passes(plan, base, progress, after_pass)


def write_atomically(path: str, data: bytes) -> None:
    """Writes the model atomically (user_files.py: the output checked first, OS errors as one
    line; runtime/files.py: no partial file, stale temporaries removed, umask, symlinks)."""
    user_files.write_atomically(path, data)
