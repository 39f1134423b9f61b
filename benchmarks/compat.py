"""Compatibility matrix: does a compiled model run its whole contract on older stock runtimes?

NAME
    python -m benchmarks.compat - run the signature contract in one venv per TFLite runtime

SYNOPSIS
    python -m benchmarks.compat [--results_dir benchmarks/results] [--runtimes litert-1.0.1,tf-2.12.1]
        [--setup_only] [--all_patches]

DESCRIPTION
    Creates (once, cached under $TFLITE_TRANSFER_COMPAT_CACHE, default
    ~/.cache/tflite_transfer_compat/) one virtual environment per runtime: every ai-edge-litert
    minor release from 1.0 to the newest (1.0.x with numpy<2), tflite-runtime 2.14 (numpy<2),
    and `tf.lite` in tensorflow-cpu 2.12 ... 2.21. Compiles the test models here (TF 2.21), in
    several variants: as compiled, with compiler.op_versions.lower_op_versions applied, and a
    synthetic "inflated" copy whose op codes are raised to the newest version TFLite's
    runtime-version table gives TF 2.14 for each op (what a newer converter or tool may stamp),
    with and without lowering. Then, in each venv, benchmarks/compat_probe.py (numpy + that runtime only)
    runs load, infer, train (the loss must fall), train_images, save/restore (bit-exact round
    trip and replay), set_learning_rate and initialize on every model.
    Writes <results_dir>/compat.md (runtime, version, model, result, error line) and
    compat.json (every probe's full result). Asserts nothing; a runtime that cannot be
    installed is reported as such.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.subjects import tiny_uint8_classifier

INSTALL_TIMEOUT_S = 1800
PROBE_TIMEOUT_S = 900
PROBE = Path(__file__).with_name("compat_probe.py")


@dataclasses.dataclass(frozen=True)
class Runtime:
    name: str                       # venv folder and table key, e.g. "tf-2.12.1"
    api: str                        # compat_probe.py --api: litert | tflite_runtime | tf
    package: str
    version: str
    requirements: tuple[str, ...]   # one `pip install` of these

    @property
    def label(self) -> str:
        return {"litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
                "tf": "tensorflow-cpu (tf.lite)"}[self.api]


# The newest patch of each minor release (--all_patches: every release).
LITERT_VERSIONS = ("1.0.1", "1.1.2", "1.2.0", "1.3.0", "1.4.0", "2.0.3", "2.1.6", "2.2.0", "2.3.0")
LITERT_ALL = ("1.0.0", "1.0.1", "1.1.0", "1.1.1", "1.1.2", "1.2.0", "1.3.0", "1.4.0", "2.0.2",
              "2.0.3", "2.1.0", "2.1.1", "2.1.2", "2.1.3", "2.1.4", "2.1.5", "2.1.6", "2.2.0", "2.3.0")
TF_VERSIONS = ("2.12.1", "2.13.1", "2.14.1", "2.15.1", "2.16.2", "2.17.1", "2.18.1", "2.19.1",
               "2.20.0", "2.21.0")


def runtimes(all_patches: bool = False) -> list[Runtime]:
    found = []
    for version in LITERT_ALL if all_patches else LITERT_VERSIONS:
        # 1.0.x wheels are built against numpy 1 but do not say so.
        numpy = ("numpy<2",) if version.startswith("1.0") else ()
        found.append(Runtime(f"litert-{version}", "litert", "ai-edge-litert", version,
                             (f"ai-edge-litert=={version}", *numpy)))
    found.append(Runtime("tflite_runtime-2.14.0", "tflite_runtime", "tflite-runtime", "2.14.0",
                         ("tflite-runtime==2.14.0", "numpy<2")))
    for version in TF_VERSIONS:
        found.append(Runtime(f"tf-{version}", "tf", "tensorflow-cpu", version,
                             (f"tensorflow-cpu=={version}",)))
    return found


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "tflite_transfer_compat"
    return Path(os.environ.get("TFLITE_TRANSFER_COMPAT_CACHE", default))


@dataclasses.dataclass(frozen=True)
class ReadyVenv:
    runtime: Runtime
    python: str | None
    setup_seconds: float
    error: str | None = None


def ensure_venv(runtime: Runtime, progress=print) -> ReadyVenv:
    """Creates the venv unless its marker holds exactly these requirements."""
    start = time.perf_counter()
    directory = cache_dir() / runtime.name
    python = directory / "bin" / "python"
    marker = directory / "installed.json"
    wanted = json.dumps(list(runtime.requirements))
    try:
        if not (marker.exists() and marker.read_text() == wanted and python.exists()):
            progress(f"  creating {directory} (pip install {' '.join(runtime.requirements)})")
            shutil.rmtree(directory, ignore_errors=True)
            directory.parent.mkdir(parents=True, exist_ok=True)
            _run([sys.executable, "-m", "venv", str(directory)])
            _run([str(python), "-m", "pip", "install", "--quiet", *runtime.requirements])
            marker.write_text(wanted)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        return ReadyVenv(runtime, None, time.perf_counter() - start, f"install failed: {error}")
    return ReadyVenv(runtime, str(python), time.perf_counter() - start)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if result.returncode != 0:
        raise RuntimeError(_last_line(result.stderr or result.stdout))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# ---------------------------------------------------------------------------------------------
# The models under test.

def inflate_op_versions(model, up_to: str = "2.14.0"):
    """A copy whose builtin op codes are raised to the newest version TFLite's runtime-version
    table gives a runtime up to `up_to`. Kernels do not read the version, so runtimes that have
    those versions run it unchanged: a stand-in for a model stamped by a TF 2.14-era tool (the
    versions that broke TF 2.12 in ../shared/NOTES-tflite.md: ADD 5, CAST 5, MUL 7, ...)."""
    from tflite_transfer.compiler import model_io, op_versions, runtime_versions

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
    from tflite_transfer.compiler import bases, keras_base, model_io, op_versions, pipeline, runtime_versions

    workdir.mkdir(parents=True, exist_ok=True)
    sources = []
    progress("building the int8 MobileNetV2 alpha 0.35 96x96 base")
    mobilenet = keras_base.build_default_mobilenet_v2(alpha=0.35, image_size=96, num_calibration_images=8,
                                                      progress=lambda m: None)
    (workdir / "mobilenet_base.tflite").write_bytes(mobilenet.tflite)
    sources.append(("mobilenet_mlp_adam", str(workdir / "mobilenet_base.tflite"), None,
                    pipeline.HeadOptions(head="mlp:16", num_classes=4, optimizer="adam", learning_rate=0.01)))
    progress("building the tiny uint8 classifier base")
    (workdir / "tiny_base.tflite").write_bytes(tiny_uint8_classifier())
    sources.append(("tiny_uint8_sgd", str(workdir / "tiny_base.tflite"), _first_output_of(
        str(workdir / "tiny_base.tflite"), "MEAN"),
        pipeline.HeadOptions(num_classes=3, learning_rate=0.1)))
    variants = []
    for name, base_path, base_output, head in sources:
        progress(f"compiling {name}")
        base = bases.load_base(bases.BaseOptions(base=base_path, base_output=base_output), lambda m: None)
        result = pipeline.compile_from_base(base, base_output, head, verify_steps=0, progress=lambda m: None)
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
    from tflite_transfer.compiler import model_io, op_versions, runtime_versions

    path = workdir / (name.replace(", ", "__").replace(" + ", "_").replace(" ", "_") + ".tflite")
    path.write_bytes(model_io.write_model_bytes(model))
    highest: dict[str, int] = {}
    for op_code in model.operatorCodes:
        name_ = model_io.operator_name(op_code)
        highest[name_] = max(highest.get(name_, 0), op_code.version or 1)
    return ModelVariant(name, str(path), dict(sorted(highest.items())),
                        runtime_versions.read_min_runtime_version(model) or "", lowered_ops)


def _first_output_of(path: str, op_name: str) -> str:
    from tflite_transfer.compiler import model_io

    model = model_io.read_model(path)
    subgraph = model.subgraphs[0]
    for op in subgraph.operators:
        if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == op_name:
            return model_io.tensor_name(subgraph.tensors[op.outputs[0]])
    raise LookupError(op_name)


# ---------------------------------------------------------------------------------------------
# Running the probe and writing the table.

def run_probe(venv: ReadyVenv, models: list[ModelVariant]) -> list[dict]:
    """One probe process per model: a runtime that segfaults loses only that model's row."""
    runtime = venv.runtime
    base = {"runtime": runtime.label, "version": runtime.version, "venv": runtime.name}
    if venv.python is None:
        return [{**base, "model": m.name, "result": "not installed", "stage": "install",
                 "error": venv.error} for m in models]
    return [{**base, **_probe_one(venv.python, runtime.api, model), "model": model.name} for model in models]


def _probe_one(python: str, api: str, model: ModelVariant) -> dict:
    command = [python, str(PROBE), "--api", api, model.path]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONNOUSERSITE": "1"})
    except subprocess.TimeoutExpired:
        return {"result": "fail", "stage": "probe", "error": f"probe timed out after {PROBE_TIMEOUT_S} s"}
    found = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    if found:
        return {**found[-1], "result": "ok" if found[-1]["ok"] else "fail"}
    stages = [line[6:] for line in completed.stderr.splitlines() if line.startswith("STAGE ")]
    other = [line for line in completed.stderr.splitlines() if line.strip() and not line.startswith("STAGE ")]
    how = (f"process killed by signal {-completed.returncode}" if completed.returncode < 0
           else f"process exited with {completed.returncode}")
    return {"result": "crash" if completed.returncode < 0 else "fail",
            "stage": stages[-1] if stages else "probe",
            "error": how + (f": {other[-1].strip()[:200]}" if other else "")}


# Causes found by hand (2026-11-25) for failures that are not op versions.
KNOWN_CAUSES = {
    "litert-1.0.1": "SignatureRunner segfaults in ResizeInputTensor on a rank-0 input: `restore`'s "
                    "`step` and `learning_rate` are shape [] (every other signature tensor has rank >= 1).",
    "litert-1.3.0": "with its default XNNPACK delegate, `train` after `restore` does not see the restored "
                    "weights (save() does); with OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES the "
                    "replay is exact. A runtime bug, not the model's.",
}


def write_results(rows: list[dict], models: list[ModelVariant], results_dir: Path, facts: dict) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "compat.json").write_text(json.dumps(
        {"facts": facts, "models": [dataclasses.asdict(m) for m in models], "results": rows},
        indent=1, sort_keys=True))
    lines = ["# Compatibility matrix: the compiled model's contract on stock runtimes", "",
             f"Measured {facts['date']} on {facts['machine']} with `python -m benchmarks.compat`. "
             "Each cell ran load, infer, train (loss must fall over 20 steps), train_images, "
             "save/restore (bit-exact round trip and replay), set_learning_rate and initialize.",
             "", "## Models", "",
             "| model | min_runtime_version | op codes lowered | highest op versions |", "|---|---|---|---|"]
    for model in models:
        versions = ", ".join(f"{k} {v}" for k, v in model.max_versions.items() if v > 1)
        lines.append(f"| {model.name} | {model.min_runtime_version} | {model.lowered_ops} | {versions} |")
    names = [m.name for m in models]
    lines += ["", "## Results", "", "| runtime | version | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    by_runtime: dict[tuple, dict] = {}
    for row in rows:
        by_runtime.setdefault((row["runtime"], row["version"]), {})[row["model"]] = row
    for (runtime, version), cells in by_runtime.items():
        lines.append(f"| {runtime} | {version} | " + " | ".join(
            cells[n]["result"] if n in cells else "-" for n in names) + " |")
    errors = [(k, r) for k, cells in by_runtime.items() for r in cells.values() if r["result"] != "ok"]
    lines += ["", "## Errors", ""]
    if not errors:
        lines.append("None: every runtime ran every model's whole contract.")
    else:
        lines += ["| runtime | version | model | stage | error line |", "|---|---|---|---|---|"]
        for (runtime, version), row in errors:
            error = str(row.get("error", "")).replace("|", "\\|")
            lines.append(f"| {runtime} | {version} | {row['model']} | {row.get('stage', '')} | {error} |")
    causes = [f"- {row['runtime']} {row['version']}: {KNOWN_CAUSES[row['venv']]}"
              for row in {r["venv"]: r for _, r in errors}.values() if row["venv"] in KNOWN_CAUSES]
    if causes:
        lines += ["", "Causes found by hand:", "", *causes]
    path = results_dir / "compat.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compat", description=__doc__.split("\n\n")[1])
    parser.add_argument("--results_dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--workdir", default=str(cache_dir() / "models"))
    parser.add_argument("--runtimes", default="", help="comma-separated venv names (default: all)")
    parser.add_argument("--all_patches", action="store_true", help="every ai-edge-litert release")
    parser.add_argument("--setup_only", action="store_true", help="create the venvs and stop")
    args = parser.parse_args(argv)
    selected = runtimes(args.all_patches)
    if args.runtimes:
        wanted = set(args.runtimes.split(","))
        selected = [r for r in selected if r.name in wanted]
    if args.setup_only:
        for runtime in selected:
            ready = ensure_venv(runtime)
            print(runtime.name, ready.python, f"{ready.setup_seconds:.0f} s", ready.error or "", flush=True)
        return
    models = build_models(Path(args.workdir))
    rows = []
    for runtime in selected:
        ready = ensure_venv(runtime)
        found = run_probe(ready, models)
        rows += found
        print(f"{runtime.name}: " + ", ".join(f"{r['model']}: {r['result']}" for r in found), flush=True)
    import platform

    facts = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} Linux, "
             f"Python {platform.python_version()}", "python": sys.version.split()[0]}
    path = write_results(rows, models, Path(args.results_dir), facts)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
