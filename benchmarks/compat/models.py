"""The models the compatibility matrix runs: two compiled models, each as compiled, with its op
versions lowered, and "inflated" (op codes raised to what a TF 2.14-era tool may stamp)."""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

from tests.fixtures.bases import pool_output_name, tiny_uint8_classifier


def inflate_op_versions(model, up_to: str = "2.14.0"):
    """A copy whose builtin op codes are raised to the newest version TFLite's runtime-version
    table gives a runtime up to `up_to`. Kernels do not read the version, so runtimes that have
    those versions run it unchanged: a stand-in for a model stamped by a TF 2.14-era tool (the
    versions that broke TF 2.12 in ../shared/NOTES-tflite.md: ADD 5, CAST 5, MUL 7, ...)."""
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler.passes import runtime_versions

    limit = runtime_versions.version_tuple(up_to)
    newest: dict[int, int] = {}
    for (code, version), runtime in runtime_versions.RUNTIME_VERSIONS.items():
        if runtime_versions.version_tuple(runtime) <= limit:
            newest[code] = max(newest.get(code, 1), version)
    inflated = copy.deepcopy(model)
    codes, index_of, remap = [], {}, []
    for op_code in inflated.operatorCodes:
        raised = model_io.normalized_op_code(op_code)
        if model_io.is_builtin(raised):
            raised.version = max(raised.version, newest.get(model_io.builtin_code(raised), 1))
        key = model_io.op_code_key(raised)
        if key not in index_of:
            index_of[key] = len(codes)
            codes.append(raised)
        remap.append(index_of[key])
    for subgraph in inflated.subgraphs:
        for op in subgraph.operators or []:
            op.opcodeIndex = remap[op.opcodeIndex]
    inflated.operatorCodes = codes
    return inflated


@dataclasses.dataclass(frozen=True)
class ModelVariant:
    name: str
    path: str
    max_versions: dict              # op name -> highest version present
    min_runtime_version: str
    lowered_ops: int                # op codes the lowering changed (0 without lowering)


def build_models(workdir: Path, progress=print) -> list[ModelVariant]:
    """Two compiled models (MobileNetV2 0.35 96x96 int8 + MLP/Adam; a tiny uint8 classifier cut
    at its pool + softmax/SGD), each as compiled / lowered / inflated / inflated+lowered."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tflite_transfer.compiler.base import sources, mobilenet
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler.passes import op_versions, runtime_versions
    from tflite_transfer.compiler import pipeline

    workdir.mkdir(parents=True, exist_ok=True)
    sources = []
    progress("building the int8 MobileNetV2 alpha 0.35 96x96 base")
    mobilenet_base = mobilenet.build_default_mobilenet_v2(alpha=0.35, image_size=96, num_calibration_images=8,
                                                           progress=lambda m: None)
    (workdir / "mobilenet_base.tflite").write_bytes(mobilenet_base.tflite)
    sources.append(("mobilenet_mlp_adam", str(workdir / "mobilenet_base.tflite"), None,
                    pipeline.HeadOptions(head="mlp:16", num_classes=4, optimizer="adam", learning_rate=0.01)))
    progress("building the tiny uint8 classifier base")
    (workdir / "tiny_base.tflite").write_bytes(tiny_uint8_classifier())
    sources.append(("tiny_uint8_sgd", str(workdir / "tiny_base.tflite"), pool_output_name(
        str(workdir / "tiny_base.tflite")),
        pipeline.HeadOptions(num_classes=3, learning_rate=0.1)))
    variants = []
    for name, base_path, base_output, head in sources:
        progress(f"compiling {name}")
        base = sources.load_base(sources.BaseOptions(base=base_path, base_output=base_output), lambda m: None)
        result = pipeline.compile_from_base(base, head, verify_steps=0, progress=lambda m: None)
        compiled = model_io.read_model_bytes(result.model_bytes)
        inflated = inflate_op_versions(compiled)
        runtime_versions.set_min_runtime_version(inflated, runtime_versions.min_runtime_version(inflated))
        for label, model in (("as compiled", compiled), ("inflated", inflated)):
            variants.append(_write(workdir, f"{name}, {label}", model, 0))
            lowered = copy.deepcopy(model)
            report = op_versions.lower_op_versions(lowered)
            runtime_versions.set_min_runtime_version(lowered, report.min_runtime_version)
            variants.append(_write(workdir, f"{name}, {label} + lowered", lowered, len(report.changes)))
    return variants


def _write(workdir: Path, name: str, model, lowered_ops: int) -> ModelVariant:
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler.passes import runtime_versions

    path = workdir / (name.replace(", ", "__").replace(" + ", "_").replace(" ", "_") + ".tflite")
    path.write_bytes(model_io.write_model_bytes(model))
    highest: dict[str, int] = {}
    for op_code in model.operatorCodes:
        name_ = model_io.operator_name(op_code)
        highest[name_] = max(highest.get(name_, 0), op_code.version or 1)
    return ModelVariant(name, str(path), dict(sorted(highest.items())),
                        runtime_versions.read_min_runtime_version(model) or "", lowered_ops)

