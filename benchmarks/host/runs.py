"""Our fused models, the base alone and the floor, timed in child processes that import only
numpy and ai_edge_litert (as an app would), per thread count and XNNPACK setting."""

from __future__ import annotations

import dataclasses
import math

from benchmarks.common.children import run_child
from benchmarks.common.report import Measurement
from benchmarks.host.subjects import OPTIMIZERS, Subjects

DEVICE = "host"
BASE_SIGNATURE = "serving_default"   # the converted base's only signature (input `image`)


@dataclasses.dataclass(frozen=True)
class Settings:
    threads: tuple[int, ...] = (1, 2)
    xnnpack: tuple[bool, ...] = (True, False)
    train_batches: tuple[int, ...] = (1, 8, 32)
    train_images_batches: tuple[int, ...] = (1, 8)
    # Image signatures run the whole base (ms); head signatures take µs: different run counts.
    image_runs: dict = dataclasses.field(default_factory=lambda: {"min_runs": 10, "max_runs": 200, "budget_s": 1.5})
    head_runs: dict = dataclasses.field(default_factory=lambda: {"min_runs": 50, "max_runs": 3000, "budget_s": 0.5})

    @classmethod
    def quick(cls) -> "Settings":
        one = {"min_runs": 1, "max_runs": 1, "budget_s": 0.0, "warmup": 1}
        return cls(threads=(1,), xnnpack=(True, False), train_batches=(1, 8), train_images_batches=(1,),
                   image_runs=one, head_runs=one)


def delegate_name(xnnpack: bool) -> str:
    return "xnnpack" if xnnpack else "none (builtin kernels)"


def image(subjects: Subjects, batch: int) -> dict:
    return {"shape": [batch, *subjects.image_shape], "range": [0, 255]}


def bottleneck(subjects: Subjects, batch: int) -> dict:
    return {"shape": [batch, subjects.bottleneck_size], "range": [0, 6]}


def labels(subjects: Subjects, batch: int, **extra) -> dict:
    return {"shape": [batch], "fill": "labels", "classes": subjects.num_classes, **extra}


def fused_calls(subjects: Subjects, settings: Settings, model: str, batches: bool = True) -> dict[str, list[dict]]:
    """Signature calls of one fused model, grouped by what they run: {"image": [...], "head": [...]}."""
    train_batches = settings.train_batches if batches else (1,)
    images_batches = settings.train_images_batches if batches else (1,)

    def call(signature, batch, **inputs):
        return {"id": f"{model}|{signature}|{batch}", "model": model, "signature": signature, "inputs": inputs}

    image_calls = [call("load", 1, image=image(subjects, 1)), call("infer", 1, image=image(subjects, 1))]
    image_calls += [call("train_images", b, image=image(subjects, b), label=labels(subjects, b)) for b in images_batches]
    head_calls = [call("train", b, bottleneck=bottleneck(subjects, b), label=labels(subjects, b)) for b in train_batches]
    head_calls += [call("save", None),
                   {"id": f"{model}|restore|None", "model": model, "signature": "restore",
                    "inputs_from": f"{model}|save|None"},
                   call("set_learning_rate", None, learning_rate={"shape": [1], "fill": "constant",
                                                                  "value": subjects.learning_rate}),
                   call("initialize", None)]
    return {"image": image_calls, "head": head_calls}


def latency_plan(subjects: Subjects, settings: Settings, threads: int, xnnpack: bool) -> dict:
    models = {"base": subjects.base_path, "floor": subjects.floor_path,
              **{f"ours-{o}": subjects.fused_paths[o] for o in OPTIMIZERS}}
    base_call = {"id": f"base|{BASE_SIGNATURE}|1", "model": "base", "signature": BASE_SIGNATURE,
                 "inputs": {"image": image(subjects, 1)}, "runs": settings.image_runs}
    floor_call = {"id": f"floor|{BASE_SIGNATURE}|None", "model": "floor", "signature": BASE_SIGNATURE,
                  "inputs": {"x": {"shape": [1], "fill": "constant", "value": 1.0}}, "runs": settings.head_runs}
    groups = [[floor_call]]
    for optimizer in OPTIMIZERS:
        calls = fused_calls(subjects, settings, f"ours-{optimizer}")
        for index, item in enumerate(calls["image"]):
            item = {**item, "runs": settings.image_runs}
            # Interleave fused infer with the base alone, so noise from other jobs hits both alike.
            groups.append([item, base_call] if item["signature"] == "infer" else [item])
        groups += [[{**item, "runs": settings.head_runs}] for item in calls["head"]]
    return {"interpreter": "ai_edge_litert", "mode": "latency", "threads": threads, "xnnpack": xnnpack,
            "models": models, "groups": groups}


def memory_plans(subjects: Subjects, settings: Settings, threads: int, xnnpack: bool) -> dict[tuple[str, str], dict]:
    """One fresh process per scenario: {(scenario, what) -> plan}."""
    common = {"interpreter": "ai_edge_litert", "mode": "memory", "threads": threads, "xnnpack": xnnpack}
    plans = {("base alone", "memory: load model, one invoke (batch 1)"): {
        **common, "models": {"base": subjects.base_path},
        "groups": [[{"id": "base", "model": "base", "signature": BASE_SIGNATURE, "inputs": {"image": image(subjects, 1)}}]]}}
    for optimizer in OPTIMIZERS:
        model = f"ours-{optimizer}"
        calls = fused_calls(subjects, settings, model, batches=False)
        models = {model: subjects.fused_paths[optimizer]}
        plans[(f"ours ({optimizer})", "memory: every signature (batch 1)")] = {
            **common, "models": models, "groups": [[c] for c in calls["image"] + calls["head"]]}
        plans[(f"ours ({optimizer})", "memory: head signatures only (train b1, save, restore)")] = {
            **common, "models": models, "groups": [[c] for c in calls["head"][:1] + calls["head"][-4:-2]]}
    return plans


def measure_ours(subjects: Subjects, settings: Settings, progress=print) -> tuple[list[Measurement], dict]:
    """Latency and memory rows for our models, the base alone and the floor; also the runtime name."""
    rows, runtime = [], "ai_edge_litert"
    for threads in settings.threads:
        for xnnpack in settings.xnnpack:
            progress(f"  ours + base + floor: latency, {threads} thread(s), {delegate_name(xnnpack)}")
            result = run_child("tflite_model.py", latency_plan(subjects, settings, threads, xnnpack))
            runtime = result.get("runtime", runtime)
            rows += latency_rows(result, threads, xnnpack)
            for (scenario, what), plan in memory_plans(subjects, settings, threads, xnnpack).items():
                memory = run_child("tflite_model.py", plan)
                rows.append(memory_row(scenario, what, memory, runtime, threads, delegate_name(xnnpack)))
    return rows, {"ours": runtime}


def scenario_of(model: str) -> str:
    if model.startswith("ours-"):
        return f"ours ({model[5:]})"
    return {"base": "base alone", "floor": "floor (trivial model: one ADD on [1])"}.get(model, model)


def latency_rows(result: dict, threads: int, xnnpack: bool, runtime: str | None = None,
                 scenario_names=scenario_of, extra: dict | None = None) -> list[Measurement]:
    if "error" in result:   # the child itself died: one failed row says why
        return [failed_row("ours", "(all)", result["error"], runtime or "ai_edge_litert", threads, delegate_name(xnnpack))]
    rows = []
    for item in result["results"]:
        model, signature, batch = item["id"].split("|")
        common = dict(scenario=scenario_names(model), signature=signature, runtime=runtime or result["runtime"],
                      device=DEVICE, threads=threads, delegate=delegate_name(xnnpack),
                      batch=None if batch == "None" else int(batch), peak_memory_mib=None)
        if "error" in item:
            rows.append(Measurement(**common, runs=0, median_us=math.nan, min_us=None, max_us=None,
                                    extra={**(extra or {}), "error": item["error"]}))
        else:
            rows.append(Measurement(**common, runs=item["runs"], median_us=item["median_us"], min_us=item["min_us"],
                                    max_us=item["max_us"], extra=dict(extra or {})))
    return rows


def memory_row(scenario: str, what: str, result: dict, runtime: str, threads: int, delegate: str) -> Measurement:
    errors = [item["error"] for item in result.get("results", []) if "error" in item]
    if "error" in result:
        errors.append(result["error"])
    extra = {"error": "; ".join(errors)} if errors else {}
    return Measurement(scenario=scenario, signature=what, runtime=result.get("runtime", runtime), device=DEVICE,
                       threads=threads, delegate=delegate, batch=1, runs=1, median_us=math.nan, min_us=None,
                       max_us=None, peak_memory_mib=result.get("peak_rss_mib"), extra=extra)


def failed_row(scenario: str, signature: str, error: str, runtime: str, threads: int, delegate: str,
               batch: int | None = None) -> Measurement:
    return Measurement(scenario=scenario, signature=signature, runtime=runtime, device=DEVICE, threads=threads,
                       delegate=delegate, batch=batch, runs=0, median_us=math.nan, min_us=None, max_us=None,
                       peak_memory_mib=None, extra={"error": error})
