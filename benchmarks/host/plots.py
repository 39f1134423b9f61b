"""PNG plots of a host benchmark run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.common.report import Measurement
from benchmarks.host.summary import FLOOR


def _ms(row: Measurement | None) -> float:
    return math.nan if row is None or row.failed else row.median_us / 1e3


def _lookup(rows, scenario, signature, batch, single_config):
    for row in rows:
        if row.scenario == scenario and row.signature == signature and row.batch == batch and not row.failed \
                and row.threads == 1 and (row.delegate in ("xnnpack", "n/a") or not single_config):
            return row
    return None


def write_plots(rows: list[Measurement], results_dir: Path, stem: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    # 1. Latency per signature, peers beside ours (1 thread, XNNPACK where it applies).
    slots = [("load", 1), ("infer", 1), ("train", 1), ("train", 8), ("train", 32), ("train_images", 1),
             ("train_images", 8), ("save", None), ("restore", None)]
    series = {"ours (sgd)": "ours (sgd)", "ours (adam)": "ours (adam)", "base alone": "base alone",
              "Flex recipe (adam)": "flex recipe (adam)", "TF tf.function (adam)": "tf tf.function (adam)",
              "TF eager (adam)": "tf eager (adam)", "ORT training (adam)": "ort training (adam)"}
    rename = {("base alone", "infer"): "serving_default",
              ("ort training (adam)", "save"): "save (parameters, in memory)",
              ("ort training (adam)", "restore"): "restore (parameters, in memory)"}
    figure, axes = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(series)
    for index, (label, scenario) in enumerate(series.items()):
        values = [_ms(_lookup(rows, scenario, rename.get((scenario, sig), sig), batch, True)) for sig, batch in slots]
        positions = [slot + (index - len(series) / 2 + 0.5) * width for slot in range(len(slots))]
        axes.bar(positions, values, width, label=label)
    floor = _lookup(rows, FLOOR, "serving_default", None, True)
    if floor is not None:
        axes.axhline(_ms(floor), color="grey", linestyle=":", label="floor (trivial model)")
    axes.set_xticks(range(len(slots)), [f"{s}" + (f"\nbatch {b}" if b else "") for s, b in slots])
    axes.set_yscale("log")
    axes.set_ylabel("median latency per call (ms, log scale)")
    axes.set_title("Latency per signature, 1 thread (XNNPACK on for TFLite)")
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    paths.append(_save(figure, results_dir / f"{stem}-latency.png"))
    plt.close(figure)

    # 2. Train step vs batch size.
    figure, axes = plt.subplots(figsize=(7, 5))
    batches = sorted({r.batch for r in rows if r.signature == "train" and r.batch})
    scenarios = sorted({r.scenario for r in rows if r.signature == "train" and not r.failed})
    for scenario in scenarios:
        values = [_ms(_lookup(rows, scenario, "train", b, True)) for b in batches]
        if not all(math.isnan(v) for v in values):
            axes.plot(batches, values, marker="o", label=scenario)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(batches, [str(b) for b in batches])
    axes.set_xlabel("batch size")
    axes.set_ylabel("median train step (ms, log scale)")
    axes.set_title("Train step on cached bottlenecks vs batch, 1 thread")
    axes.legend(fontsize=7)
    figure.tight_layout()
    paths.append(_save(figure, results_dir / f"{stem}-train-vs-batch.png"))
    plt.close(figure)

    # 3. Peak memory per scenario (fresh process each).
    memory = [r for r in rows if r.peak_memory_mib is not None and r.threads == 1
              and r.delegate in ("xnnpack", "n/a")]
    figure, axes = plt.subplots(figsize=(10, 0.35 * len(memory) + 1.5))
    labels = [f"{r.scenario}: {r.signature.removeprefix('memory: ')}" for r in memory]
    axes.barh(range(len(memory)), [r.peak_memory_mib for r in memory], color="tab:blue")
    axes.set_yticks(range(len(memory)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("peak RSS of a fresh process (MiB, log scale)")
    axes.set_title("Peak memory per scenario, 1 thread")
    for index, row in enumerate(memory):
        axes.text(row.peak_memory_mib, index, f" {row.peak_memory_mib:.0f}", va="center", fontsize=7)
    figure.tight_layout()
    paths.append(_save(figure, results_dir / f"{stem}-memory.png"))
    plt.close(figure)
    return paths


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path
