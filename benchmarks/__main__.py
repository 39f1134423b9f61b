"""Host benchmark: our fused model against the base alone and the peers, in one run.

NAME
    python -m benchmarks - per-signature latency, peak memory and file sizes, side by side

SYNOPSIS
    python -m benchmarks [--alpha 1.0] [--image_size 224] [--results_dir benchmarks/results]
        [--no-peers] [--quick] [--threads 1,2]

DESCRIPTION
    Compiles the embedded int8 MobileNetV2 with a 4-class softmax head (SGD and Adam), then
    times every signature (load, infer, train at batch 1/8/32, train_images at 1/8, save,
    restore, set_learning_rate, initialize) in child processes that import only numpy and
    ai_edge_litert, at each thread count with XNNPACK on (OpResolverType.AUTO) and off
    (BUILTIN_WITHOUT_DEFAULT_DELEGATES); the base alone and a trivial one-ADD model (the floor)
    are timed in the same processes. Peak RSS (VmHWM) is read from a fresh process per scenario.
    Peers on the same head, batches and bottlenecks, 1 thread: TF's Flex on-device-training
    recipe (TF 2.18.1 venv), TF 2.21 eager and tf.function, ONNX Runtime training 1.19.2 (venv).
    Venvs are created on first use under $TFLITE_TRANSFER_BENCH_CACHE
    (default ~/.cache/tflite_transfer_bench/).
    Writes <results_dir>/host-benchmark-<UTC>.json (every figure), .md (ratios first) and three
    PNG plots; prints the headline ratios. Only the signature call is timed (inputs pre-built);
    each figure is the median of its runs with min-max. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import host, peer_envs, peer_runs, plots, summary  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from benchmarks.subjects import OPTIMIZERS, build_subjects  # noqa: E402

TITLE = "host benchmark"


def machine_facts() -> dict[str, str]:
    facts = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu count": str(os.cpu_count())}
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        facts["cpu"] = model
    except (OSError, StopIteration):
        pass
    try:
        facts["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    from importlib.metadata import version
    for package in ("ai-edge-litert", "tensorflow-cpu", "numpy"):
        try:
            facts[package] = version(package)
        except Exception:  # noqa: BLE001 - a missing package is a fact too
            facts[package] = "not installed"
    return facts


def run_benchmark(results_dir: str | Path, alpha: float = 1.0, image_size: int = 224, num_classes: int = 4,
                  learning_rate: float = 0.001, settings: host.Settings | None = None, peers: bool = True,
                  base=None, progress=print) -> dict[str, Path]:
    """The whole comparison; returns the written files {"json", "markdown", "png": [...]}."""
    start = time.perf_counter()
    settings = settings or host.Settings()
    results_dir = Path(results_dir)
    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-bench-") as workdir:
        subjects = build_subjects(workdir, alpha, image_size, num_classes, learning_rate, progress, base=base)
        progress("timing our fused models, the base alone and the floor")
        rows, runtimes = host.measure_ours(subjects, settings, progress)
        facts: dict = {"runtimes": runtimes}
        envs = {}
        if peers:
            progress("preparing the peers' venvs")
            envs = {"flex": peer_envs.ensure_env(peer_envs.FLEX_ENV, progress),
                    "ort": peer_envs.ensure_env(peer_envs.ORT_ENV, progress)}
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
                                     delegates=tuple(host.delegate_name(x) for x in settings.xnnpack),
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


def _notes(subjects, settings: host.Settings) -> list[str]:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_classes", type=int, default=4)
    parser.add_argument("--results_dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts for our model")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip the peers (no venvs)")
    parser.add_argument("--quick", action="store_true", help="1 run per figure, fewer configurations (smoke test)")
    args = parser.parse_args(argv)
    settings = host.Settings.quick() if args.quick else host.Settings()
    settings = dataclasses.replace(settings, threads=tuple(int(t) for t in args.threads.split(",")))
    run_benchmark(args.results_dir, args.alpha, args.image_size, args.num_classes, settings=settings, peers=args.peers)


if __name__ == "__main__":
    main()
