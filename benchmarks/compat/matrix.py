"""Runs the probe in each runtime's venv and writes the matrix (Markdown + JSON)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

from benchmarks.common.report import write_document
from benchmarks.common.venvs import ReadyVenv, cache_dir
from benchmarks.compat.models import ModelVariant
from benchmarks.compat.runtimes import Runtime

PROBE_TIMEOUT_S = 900
PROBE = Path(__file__).with_name("probe.py")


def run_probe(runtime: Runtime, venv: ReadyVenv, models: list[ModelVariant]) -> list[dict]:
    """One probe process per model: a runtime that segfaults loses only that model's row."""
    base = {"runtime": runtime.label, "version": runtime.version, "venv": runtime.name}
    if venv.python is None:
        return [{**base, "model": m.name, "result": "not installed", "stage": "install",
                 "error": venv.error} for m in models]
    return [{**base, **_probe_one(venv.python, runtime.api, model), "model": model.name} for model in models]


def contract_path() -> str:
    """A folder holding only `tflite_transfer/runtime` (a link to this checkout's runtime/): on a
    venv's PYTHONPATH it lends the probe the contract module and nothing else of the project."""
    shim = cache_dir() / "compat" / "contract_shim"
    link = shim / "tflite_transfer" / "runtime"
    target = Path(__file__).resolve().parents[2] / "runtime"
    if not link.is_symlink() or link.resolve() != target:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return str(shim)


def _probe_one(python: str, api: str, model: ModelVariant) -> dict:
    command = [python, str(PROBE), "--api", api, model.path]
    try:
        completed = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=PROBE_TIMEOUT_S,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONNOUSERSITE": "1",
                                        "PYTHONPATH": contract_path()})
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
    # Fixed names (not timestamped): the matrix replaces the previous one, README links it.
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": results_dir / "compat.json", "md": results_dir / "compat.md"}
    write_document(paths, {"facts": facts, "models": [dataclasses.asdict(m) for m in models], "results": rows},
                   "\n".join(lines) + "\n")
    return paths["md"]
