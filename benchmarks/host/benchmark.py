"""Host benchmark: our fused model against the base alone and the peers, in one run
(`python -m benchmarks.host` is the command line; its docstring says what is measured)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import venvs
from benchmarks.host import runs, peer_runs, plots, summary  # noqa: E402
from benchmarks.common.report import machine_facts, write_report  # noqa: E402
from benchmarks.host.subjects import OPTIMIZERS, build_subjects  # noqa: E402

TITLE = "host benchmark"


def run_benchmark(results_dir: str | Path, alpha: float = 1.0, image_size: int = 224, num_classes: int = 4,
                  learning_rate: float = 0.001, settings: runs.Settings | None = None, peers: bool = True,
                  base=None, progress=print) -> dict[str, Path]:
    """The whole comparison; returns the written files {"json", "markdown", "png": [...]}."""
    start = time.perf_counter()
    settings = settings or runs.Settings()
    results_dir = Path(results_dir)
    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-bench-") as workdir:
        subjects = build_subjects(workdir, alpha, image_size, num_classes, learning_rate, progress, base=base)
        progress("timing our fused models, the base alone and the floor")
        rows, runtimes = runs.measure_ours(subjects, settings, progress)
        facts: dict = {"runtimes": runtimes}
        envs = {}
        if peers:
            progress("preparing the peers' venvs")
            envs = {"flex": venvs.ensure_venv(venvs.FLEX_ENV, progress),
                    "ort": venvs.ensure_venv(venvs.ORT_ENV, progress)}
            facts["venvs"] = {name: {"python": env.python, "versions": env.versions, "error": env.error,
                                     "setup_seconds": round(env.setup_seconds, 1)} for name, env in envs.items()}
            progress("running the peers")
            flex_rows, facts["flex"] = peer_runs.measure_flex(subjects, settings, envs["flex"], workdir, progress)
            eager_rows, facts["tf_eager"] = peer_runs.measure_tf_eager(subjects, settings, progress)
            ort_rows, facts["ort"] = peer_runs.measure_ort(subjects, settings, envs["ort"], workdir, progress)
            rows += flex_rows + eager_rows + ort_rows
        facts["import_only_peak_rss_mib"] = peer_runs.measure_import_floors(envs)
        sizes = {"base": os.path.getsize(subjects.base_path), "floor": os.path.getsize(subjects.floor_path),
                 "fused": {o: os.path.getsize(p) for o, p in subjects.fused_paths.items()},
                 "head_alone": subjects.head_sizes, "ours_state_bytes": subjects.state_bytes,
                 "flex": {o: facts.get("flex", {}).get("sizes", {}).get(o) for o in OPTIMIZERS},
                 "flex_checkpoint_file": {o: facts.get("flex", {}).get("sizes", {}).get(f"{o} checkpoint file")
                                          for o in OPTIMIZERS},
                 "ort": {o: facts.get("ort", {}).get("sizes", {}).get(o) for o in OPTIMIZERS}}
    ratios = summary.headline_ratios(rows, sizes, threads=settings.threads,
                                     delegates=tuple(runs.delegate_name(x) for x in settings.xnnpack),
                                     train_batches=settings.train_batches)
    elapsed = time.perf_counter() - start
    machine["benchmark wall time"] = f"{elapsed:.0f} s"
    document_summary = {"subject": dataclasses.asdict(subjects) | {"fused_paths": None, "base_path": None,
                                                                     "floor_path": None},
                        "ratios": ratios, "sizes": sizes, "facts": facts, "settings": dataclasses.asdict(settings),
                        "peers_run": peers, "wall_seconds": elapsed}
    sections = [summary.ratios_markdown(ratios), _sizes_markdown(sizes), _findings_markdown(facts, peers)]
    notes = _notes(subjects, settings)
    json_path, markdown_path = write_report(results_dir, TITLE, rows, machine, notes, document_summary, sections)
    try:
        pngs = plots.write_plots(rows, results_dir, json_path.stem)
        plot_text = "".join(f"![{p.stem}]({p.name})\n" for p in pngs)
    except ImportError as error:   # matplotlib is optional: the JSON and Markdown are the record
        pngs, plot_text = [], f"No plots: {error} (pip install matplotlib).\n"
        progress(plot_text.strip())
    with open(markdown_path, "a", encoding="utf-8") as handle:
        handle.write("\n## Plots\n\n" + plot_text)
    progress(summary.ratios_markdown(ratios))
    progress(f"wrote {json_path}, {markdown_path}, {len(pngs)} PNG plots in {elapsed:.0f} s")
    return {"json": json_path, "markdown": markdown_path, "png": pngs}


def _sizes_markdown(sizes: dict) -> str:
    lines = ["## File sizes (bytes)", "", "| what | sgd | adam |", "|---|---:|---:|",
             f"| base .tflite alone | {sizes['base']} | {sizes['base']} |"]
    for label, key in (("ours: fused .tflite (base + head, one file)", "fused"), ("ours: head alone, as converted", "head_alone"),
                       ("ours: state returned by `save` (all variables and slots)", "ours_state_bytes"),
                       ("Flex recipe: head .tflite", "flex"), ("Flex recipe: checkpoint file (weights only)", "flex_checkpoint_file")):
        lines.append(f"| {label} | " + " | ".join(str(sizes[key].get(o)) for o in OPTIMIZERS) + " |")
    ort = sizes.get("ort", {})
    if any(ort.values()):
        names = sorted({name for files in ort.values() if files for name in files})
        for name in names:
            label = ("ORT: checkpoint file written by a save (with optimizer state)" if name == "saved_checkpoint"
                     else f"ORT artifact `{name}`")
            lines.append(f"| {label} | " + " | ".join(str((ort.get(o) or {}).get(name)) for o in OPTIMIZERS) + " |")
    lines.append(f"| floor model | {sizes['floor']} | |")
    return "\n".join(lines) + "\n"


def _findings_markdown(facts: dict, peers: bool) -> str:
    lines = ["## Findings and runtimes", ""]
    lines.append(f"- Our models were timed in `{facts['runtimes'].get('ours')}` (child processes importing only numpy "
                 "and LiteRT). TF eager / tf.function ran in this project's venv.")
    if not peers:
        lines.append("- Peers were not run (`--no-peers`).")
        return "\n".join(lines) + "\n"
    for name, venv in facts.get("venvs", {}).items():
        state = f"error: {venv['error']}" if venv["error"] else f"{venv['versions']}, ready in {venv['setup_seconds']} s"
        lines.append(f"- Venv `{name}` (`{venv['python']}`): {state}.")
    flex = facts.get("flex", {})
    if flex.get("flex_ops"):
        lines.append(f"- The Flex recipe's converted model needs Select TF ops: {flex['flex_ops']}.")
    for optimizer, outcome in flex.get("on_tf_2_21", {}).items():
        for interpreter, signatures in outcome.items():
            # The interpreter repeats its whole message per failed node: the first sentence says it.
            text = "; ".join(f"`{sig}`: {_first_sentence(result)}" for sig, result in signatures.items())
            lines.append(f"- The same Flex recipe model ({optimizer}) in this venv's {interpreter}: {text}")
    if facts.get("ort", {}).get("error"):
        lines.append(f"- ONNX Runtime training could not run: {facts['ort']['error']}")
    floors = facts.get("import_only_peak_rss_mib", {})
    if floors:
        lines.append("- Peak RSS of a process that only imports the runtime: " + "; ".join(
            f"{name} {value:.1f} MiB" if isinstance(value, float) else f"{name}: {value}" for name, value in floors.items()))
    return "\n".join(lines) + "\n"


def _first_sentence(text: str) -> str:
    head, separator, rest = text.partition(". ")
    if not separator:
        return text
    node = rest[rest.find("Node number"):].split(".")[0] if "Node number" in rest else ""
    return f"{head}." + (f" … {node}." if node else "")


def _notes(subjects, settings: runs.Settings) -> list[str]:
    return [
        f"Subject: {subjects.base_description}; softmax head, {subjects.num_classes} classes, learning rate "
        f"{subjects.learning_rate}, bottleneck {subjects.bottleneck_size}.",
        "Times are per signature-runner call (inputs copied in, graph run, outputs copied out), inputs pre-built; "
        "median (min-max) of `runs` calls after warm-up; round-robin with the calls of the same group "
        "(fused infer interleaved with the base alone; Flex train interleaved with ours in the same interpreter).",
        f"Run counts: image signatures {settings.image_runs}, head signatures {settings.head_runs} "
        "(at least min_runs, then until the budget in seconds is spent or max_runs).",
        "Memory: VmHWM of a fresh child process per scenario (not ru_maxrss, which Linux carries over from the "
        "parent across fork+exec).",
        "Floor: `serving_default` of a one-ADD model on a [1] tensor, timed in the same process as ours; "
        "set_learning_rate (CALL_ONCE + one ASSIGN_VARIABLE) is also listed.",
        "Peers ran at 1 thread. Flex recipe: labels one-hot float32 (as in TF's recipe), save/restore write/read a "
        "checkpoint file with the model's weights only. ORT: labels int64, AdamW with weight decay 0 for Adam. "
        "TF eager/tf.function: save/restore = all model and optimizer variables to/from numpy.",
        "Other jobs may share this 2-core machine: the load average at start is in the machine facts; rerun when quiet.",
    ]
