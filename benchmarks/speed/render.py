"""Markdown sections and the plot of a speed sweep (the report file itself is written by
benchmarks/common/report.py's `write_report`, shared by every benchmark)."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.common.report import format_duration


def _ratio_cell(row: dict | None) -> str:
    if row is None:
        return "—"
    if row.get("error"):
        return "failed"
    low, high = row["ratio_iqr"]
    mark = " ⚠" if row["wide_spread"] else ""
    return f"**{row['ratio']:.2f}** ({low:.2f}–{high:.2f}){mark}"


def ratio_table(rows: list[dict], peer: str, heads, optimizers, batches) -> str:
    """Ours / peer per head x optimizer (rows) and batch (columns): median (IQR) of the rounds."""
    index = {(r["head"], r["optimizer"], r["batch"]): r for r in rows if r["peer"] == peer}
    if not index:
        return ""
    lines = [f"### Our train step / {peer}'s (median ratio of interleaved rounds, IQR; < 1 = ours faster)", "",
             "| head, optimizer | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|" + "---:|" * len(batches)]
    for head in heads:
        for optimizer in optimizers:
            if any((head, optimizer, b) in index for b in batches):
                cells = [_ratio_cell(index.get((head, optimizer, b))) for b in batches]
                lines.append(f"| {head}, {optimizer} | " + " | ".join(cells) + " |")
    lines += ["", "⚠ = the IQR of the ratios is wider than 25 % of the median (noisy row)."]
    return "\n".join(lines)


def bound_table(bounds: list[dict]) -> str:
    lines = ["### Our step against the physical limit", "",
             "| head, optimizer | batch | our step | bytes to move | memory bound (at working set / DRAM) "
             "| arithmetic bound | ours / bound |", "|---|---:|---:|---:|---:|---:|---:|"]
    for b in bounds:
        lines.append(
            f"| {b['head']}, {b['optimizer']} | {b['batch']} | {format_duration(b['ours_us'])} "
            f"| {b['traffic_bytes'] / 1e6:.2f} MB | {format_duration(b['memory_bound_us'])} / "
            f"{format_duration(b['dram_bound_us'])} | {format_duration(b['compute_bound_us'])} "
            f"| **{b['ours_over_bound']:.2f}** |")
    return "\n".join(lines)


def before_after_table(before: list[dict], after: list[dict], peer: str, batches) -> str:
    old = {(r["head"], r["optimizer"], r["batch"]): r for r in before if r["peer"] == peer and not r.get("error")}
    new = {(r["head"], r["optimizer"], r["batch"]): r for r in after if r["peer"] == peer and not r.get("error")}
    keys = [k for k in new if k in old]
    if not keys:
        return ""
    lines = [f"### Before / after the training-graph rewrite (ratio to {peer}; our step)", "",
             "| head, optimizer | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|" + "---:|" * len(batches)]
    seen = []
    for head, optimizer, _ in keys:
        if (head, optimizer) in seen:
            continue
        seen.append((head, optimizer))
        cells = []
        for batch in batches:
            o, n = old.get((head, optimizer, batch)), new.get((head, optimizer, batch))
            cells.append("—" if o is None or n is None else
                         f"{o['ratio']:.2f} → **{n['ratio']:.2f}** "
                         f"({format_duration(o['ours_median_us'])} → {format_duration(n['ours_median_us'])})")
        lines.append(f"| {head}, {optimizer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plot(rows: list[dict], bounds: list[dict], heads, path: Path) -> Path:
    """Left: ours / ORT vs head size per optimizer and batch. Right: ours / bound."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    positions = {head: i for i, head in enumerate(heads)}
    series = sorted({(r["optimizer"], r["batch"]) for r in rows if r["peer"] == "ORT training"})
    for optimizer, batch in series:
        points = [(positions[r["head"]], r["ratio"]) for r in rows if r["peer"] == "ORT training"
                  and r["optimizer"] == optimizer and r["batch"] == batch and not r.get("error")]
        if points:
            left.plot(*zip(*sorted(points)), marker="o" if optimizer == "sgd" else "s",
                      linestyle="-" if optimizer == "sgd" else "--", label=f"{optimizer}, batch {batch}")
    left.axhline(1.0, color="grey", linestyle=":")
    left.set_xticks(range(len(heads)), heads)
    left.set_ylabel("our step / ORT training's (median of rounds)")
    left.set_title("Train step vs ONNX Runtime training, 1 thread (< 1: ours faster)")
    left.legend(fontsize=7)
    for optimizer, batch in series:
        points = [(positions[b["head"]], b["ours_over_bound"]) for b in bounds
                  if b["optimizer"] == optimizer and b["batch"] == batch and math.isfinite(b["ours_over_bound"])]
        if points:
            right.plot(*zip(*sorted(points)), marker="o" if optimizer == "sgd" else "s",
                       linestyle="-" if optimizer == "sgd" else "--", label=f"{optimizer}, batch {batch}")
    right.axhline(1.0, color="grey", linestyle=":")
    right.set_yscale("log")
    right.set_xticks(range(len(heads)), heads)
    right.set_ylabel("our step / physical bound (log)")
    right.set_title("Our step against max(memory, arithmetic) bound")
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
