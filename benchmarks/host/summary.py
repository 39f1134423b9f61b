"""Headline ratios (ours / theirs) computed from the measured rows, as data and as Markdown."""

from __future__ import annotations

import math

from benchmarks.common.report import Measurement, format_duration
from benchmarks.host.subjects import OPTIMIZERS

FLOOR = "floor (trivial model: one ADD on [1])"


def find(rows: list[Measurement], scenario: str, signature: str, batch=None, threads: int = 1,
         delegate: str | None = "xnnpack") -> Measurement | None:
    for row in rows:
        if (row.scenario == scenario and row.signature == signature and row.batch == batch and row.threads == threads
                and (delegate is None or row.delegate == delegate) and not row.failed):
            return row
    return None


def _time(ours: Measurement | None, theirs: Measurement | None, comparison: str, what: str) -> dict:
    def text(m):
        return "not measured" if m is None else f"{format_duration(m.median_us, m.min_us, m.max_us)}, {m.runs} runs"
    ratio = ours.median_us / theirs.median_us if ours and theirs and theirs.median_us > 0 else math.nan
    return {"comparison": comparison, "what": what, "ours": text(ours), "theirs": text(theirs),
            "ratio": None if math.isnan(ratio) else ratio}


def _amount(ours: float | None, theirs: float | None, comparison: str, what: str, unit: str) -> dict:
    def text(value):
        return "not measured" if value is None else (f"{value:.1f} MiB" if unit == "MiB" else f"{value / 1e6:.3f} MB")
    ratio = ours / theirs if ours is not None and theirs else None
    return {"comparison": comparison, "what": what, "ours": text(ours), "theirs": text(theirs), "ratio": ratio}


def _memory(rows, scenario, what_prefix, threads=1, delegate="xnnpack") -> float | None:
    for row in rows:
        if (row.scenario == scenario and row.signature.startswith(what_prefix) and row.threads == threads
                and (delegate is None or row.delegate == delegate) and row.peak_memory_mib is not None):
            return row.peak_memory_mib
    return None


def headline_ratios(rows: list[Measurement], sizes: dict, threads=(1, 2), delegates=("xnnpack", "none (builtin kernels)"),
                    train_batches=(1, 8, 32)) -> list[dict]:
    out = []
    for optimizer in OPTIMIZERS:
        ours = f"ours ({optimizer})"
        for thread_count in threads:
            for delegate in delegates:
                out.append(_time(find(rows, ours, "infer", 1, thread_count, delegate),
                                 find(rows, "base alone", "serving_default", 1, thread_count, delegate),
                                 "fused infer / base alone", f"{optimizer}, batch 1, {thread_count} thread(s), {delegate}"))
        for batch in train_batches:
            out.append(_time(find(rows, ours, "train", batch), find(rows, FLOOR, "serving_default"),
                             "train step / floor (trivial model)", f"{optimizer}, batch {batch}, 1 thread, xnnpack"))
        out.append(_time(find(rows, ours, "train", 1), find(rows, ours, "set_learning_rate"),
                         "train step / set_learning_rate (same model)", f"{optimizer}, batch 1, 1 thread, xnnpack"))
        flex, flex_ours = f"flex recipe ({optimizer})", f"ours ({optimizer}) in TF 2.18.1 tf.lite"
        for batch in train_batches:
            out.append(_time(find(rows, ours, "train", batch), find(rows, flex, "train", batch),
                             "ours (LiteRT 2.3) / Flex recipe (TF 2.18.1 tf.lite)", f"train, {optimizer}, batch {batch}"))
            out.append(_time(find(rows, flex_ours, "train", batch), find(rows, flex, "train", batch),
                             "ours / Flex recipe, both in TF 2.18.1 tf.lite", f"train, {optimizer}, batch {batch}"))
        for signature in ("save", "restore"):
            out.append(_time(find(rows, ours, signature), find(rows, flex, signature),
                             "ours (LiteRT 2.3) / Flex recipe (TF 2.18.1 tf.lite)",
                             f"{signature}, {optimizer} (ours: in memory, all state; Flex: file, weights only)"))
        out.append(_amount(_memory(rows, ours, "memory: head signatures only"),
                           _memory(rows, flex, "memory: head signatures"),
                           "ours / Flex recipe", f"peak RSS, head signatures only, {optimizer}", "MiB"))
        out.append(_amount(_memory(rows, ours, "memory: every signature"), _memory(rows, flex, "memory: app"),
                           "ours / Flex recipe", f"peak RSS, whole app (base + head), {optimizer}", "MiB"))
        if sizes.get("flex", {}).get(optimizer) is not None:
            out.append(_amount(sizes["fused"][optimizer], sizes["base"] + sizes["flex"][optimizer],
                               "ours / Flex recipe", f"file size: fused vs base .tflite + Flex head .tflite, {optimizer}", "MB"))
        for variant in ("tf.function", "eager"):
            for batch in train_batches:
                out.append(_time(find(rows, ours, "train", batch),
                                 find(rows, f"tf {variant} ({optimizer})", "train", batch, delegate=None),
                                 f"ours / TF 2.21 {variant}", f"train, {optimizer}, batch {batch}"))
        for signature in ("save", "restore"):
            out.append(_time(find(rows, ours, signature), find(rows, f"tf eager ({optimizer})", signature, delegate=None),
                             "ours / TF 2.21 eager", f"{signature} (in memory, all state), {optimizer}"))
        out.append(_amount(_memory(rows, ours, "memory: head signatures only"),
                           _memory(rows, f"tf eager ({optimizer})", "memory:", delegate=None),
                           "ours / TF 2.21 eager", f"peak RSS, head only, {optimizer}", "MiB"))
        ort = f"ort training ({optimizer})"
        for batch in train_batches:
            out.append(_time(find(rows, ours, "train", batch), find(rows, ort, "train", batch, delegate=None),
                             "ours / ORT training 1.19.2", f"train, {optimizer}, batch {batch}"))
        for signature, theirs in (("save", "save (parameters, in memory)"), ("restore", "restore (parameters, in memory)"),
                                  ("save", "save (checkpoint file)")):
            out.append(_time(find(rows, ours, signature), find(rows, ort, theirs, delegate=None),
                             "ours / ORT training 1.19.2", f"{signature} vs ORT {theirs}, {optimizer}"))
        out.append(_amount(_memory(rows, ours, "memory: head signatures only"), _memory(rows, ort, "memory:", delegate=None),
                           "ours / ORT training 1.19.2", f"peak RSS, head only, {optimizer}", "MiB"))
        ort_files = sizes.get("ort", {}).get(optimizer) or {}
        ort_total = sum(v for k, v in ort_files.items() if k != "saved_checkpoint" and v)
        if ort_total:
            out.append(_amount(sizes["fused"][optimizer], sizes["base"] + ort_total, "ours / ORT training 1.19.2",
                               f"file size: fused vs base .tflite + ORT artifacts, {optimizer}", "MB"))
    return [row for row in out if row["ours"] != "not measured" or row["theirs"] != "not measured"]


def ratios_markdown(ratios: list[dict]) -> str:
    lines = ["## Headline ratios (ours / theirs; < 1 means ours is faster or smaller)", "",
             "| comparison | what | ours | theirs | ratio |", "|---|---|---|---|---:|"]
    for row in ratios:
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        cells = [row["comparison"], row["what"], row["ours"], row["theirs"], ratio]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
