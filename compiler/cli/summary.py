"""The human summary `compile-transfer` prints after a compile."""

from __future__ import annotations

import dataclasses

from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.head import hyper_parameters


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]       # -1 marks the dynamic batch
    dtype: str


def describe_signatures(model: model_io.ModelT) -> dict[str, tuple[list[TensorInfo], list[TensorInfo]]]:
    described = {}
    for signature in model.signatureDefs:
        subgraph = model.subgraphs[signature.subgraphIndex]
        info = lambda maps: [TensorInfo(m.name.decode(), tuple(model_io.tensor_shape(subgraph.tensors[m.tensorIndex])),  # noqa: E731
                                        model_io.tensor_type_name(subgraph.tensors[m.tensorIndex].type))
                             for m in sorted(maps or [], key=lambda m: m.name)]
        described[signature.signatureKey.decode()] = (info(signature.inputs), info(signature.outputs))
    return described


def _tensors(infos: list[TensorInfo], limit: int = 4) -> str:
    shown = [f"{t.name} {list(t.shape)} {t.dtype}".replace("-1", "batch") for t in infos[:limit]]
    if len(infos) > limit:
        shown.append(f"... {len(infos) - limit} more")
    return ", ".join(shown) or "-"


def _labels(labels: tuple[str, ...], num_outputs: int, class_ids: bool, limit: int = 12) -> str:
    if not labels:
        what = f"class ids 0..{num_outputs - 1}" if class_ids else f"{num_outputs} float targets"
        return f"no labels ({what}; --labels names the classes)"
    shown = ", ".join(labels[:limit]) + (f", ... {len(labels) - limit} more" if len(labels) > limit else "")
    return f"{len(labels)}: {shown}"


def _interface(metadata) -> str:
    """How an app calls the model: contract version, input, label, bottleneck adapter."""
    spec, names = metadata.input, metadata.tensor_names
    shown = lambda pair: f"[{pair[0]:g}, {pair[1]:g}]"  # noqa: E731
    if spec is None:  # recorded as version 2: an image as the base takes it
        fed = f"pixels {shown(metadata.image_range)}" if metadata.image_range else "the base's values"
        text = f"contract version {metadata.contract_version}; input '{names.input}' (image): {fed}"
    else:
        fed = "values not known" if spec.range is None else f"values {shown(spec.range)}"
        if spec.range is not None and spec.range != spec.base_range:
            fed += f", scaled in the model to the base's {shown(spec.base_range)}"
        text = f"contract version {metadata.contract_version}; input '{names.input}' ({spec.kind}): {fed}"
    text += f"; label '{names.label}' {metadata.label.kind}"
    adapter = metadata.bottleneck_adapter
    if adapter:
        text += f"; bottleneck: {adapter['kind']} of {adapter['cut_shape']} -> {metadata.bottleneck_size} features"
    return text


def format_summary(result, output_path: str) -> str:
    lines = [f"wrote {output_path}"]
    base = result.base
    weights = "SYNTHETIC weights (not pretrained: features are not meaningful; pass --base_weights)" \
        if base.synthetic_weights else "weights as given"
    lines.append(f"base:  {base.description}; {weights}")
    loss, optimizer = result.head.loss, result.head.optimizer
    loss_choices = f" ({hyper_parameters.shown(loss.hyper_parameters)})" if loss.hyper_parameters else ""
    optimizer_choices = hyper_parameters.shown({"learning rate": optimizer.learning_rate, **optimizer.hyper_parameters})
    lines.append(f"head:  {result.head.head.description}; loss {loss.name}{loss_choices}; "
                 f"optimizer {optimizer.name} ({optimizer_choices})")
    lines.append(f"labels: {_labels(result.metadata.labels, result.metadata.num_outputs, loss.labels_are_class_ids)}")
    scale = getattr(result, "feature_scale", None)
    if scale is not None:
        from tflite_transfer.compiler.passes import feature_scale  # noqa: PLC0415

        bound = feature_scale.stable_bound(scale, loss.name, result.head.head.num_outputs)
        lines.append(f"rate:  SGD is stable below {bound:.3g} for these features (max |bottleneck|^2 "
                     f"{scale.max_norm2:.4g} on {scale.inputs}); fit rolls back and says so if the loss rises")
    lines.append(f"size:  base {len(base.tflite) / 1e6:.3f} MB + head {result.head_bytes / 1e6:.3f} MB "
                 f"-> fused {len(result.model_bytes) / 1e6:.3f} MB")
    lines.append(f"batch: {result.batch.describe()}")
    lines.append(f"interface: {_interface(result.metadata)}")
    lines.append("signatures (inputs -> outputs; ops run, callees included):")
    for key, (inputs, outputs) in result.signatures.items():
        lines.append(f"  {key:<18} {_tensors(inputs)} -> {_tensors(outputs)}  "
                     f"[{result.op_audit.ops_per_signature.get(key, 0)} ops]")
    op_types = ", ".join(f"{name} {count}" for name, count in result.op_audit.op_types.items())
    lines.append(f"op types ({sum(result.op_audit.op_types.values())} ops, all TFLite builtins): {op_types}")
    rewritten = " (before the batch rewrite above)" if result.batch.base_rewritten else ""
    lines.append(f"checks: builtin ops only; {result.base_tensors_checked} base tensors identical to the "
                 f"original{rewritten}; signature contract complete")
    batches = sorted({batch for _, batch in result.validation.runs})
    lines.append(f"ran:   every signature in {result.validation.interpreter} at batch "
                 f"{' and '.join(map(str, batches))} on the bytes written (model digest checked)")
    if getattr(result, "reproduction", None) is not None:
        lines.append(f"proof: {result.reproduction.describe()}")
    lines.append(f"runtime: min_runtime_version {result.versions.min_runtime_version}; "
                 f"{len(result.versions.changes)} op codes lowered to the version their kernels need")
    if result.parity is not None:
        lines.append(f"verify: {result.parity.steps} train steps (batch {result.parity.batch_size}) in "
                     f"{result.parity.interpreter} vs TensorFlow eager + Keras {result.head.optimizer.name}: "
                     f"relative weight difference {result.parity.max_relative_difference:.2e}, "
                     f"max loss difference {result.parity.max_loss_difference:.2e}")
    return "\n".join(lines)
