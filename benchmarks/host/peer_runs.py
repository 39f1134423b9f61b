"""The peers, each in the same run on the same head, batches and machine (1 thread):
TF's Flex recipe (its own venv, TF 2.18.1's tf.lite), TF 2.21 eager / tf.function, and ONNX
Runtime training (its own venv). Each returns Measurement rows plus facts for the report."""

from __future__ import annotations

import math
import os

from benchmarks.host import runs
from benchmarks.common.children import run_child
from benchmarks.common.venvs import ReadyVenv
from benchmarks.common.report import Measurement
from benchmarks.host.subjects import OPTIMIZERS, Subjects

THREADS = 1


def measure_import_floors(envs: dict[str, ReadyVenv]) -> dict[str, float | str]:
    """Peak RSS of processes that only import each runtime."""
    floors = {"ai_edge_litert (this venv)": run_child("import_only.py", args=("ai_edge_litert.interpreter",)),
              "tensorflow 2.21 (this venv)": run_child("import_only.py", args=("tensorflow",))}
    if envs.get("flex") and envs["flex"].python:
        floors["tensorflow 2.18.1 (Flex venv)"] = run_child("import_only.py", python=envs["flex"].python,
                                                            env=envs["flex"].environ(), args=("tensorflow",))
    if envs.get("ort") and envs["ort"].python:
        floors["onnxruntime.training.api (ORT venv; imports torch)"] = run_child(
            "import_only.py", python=envs["ort"].python, env=envs["ort"].environ(),
            args=("onnxruntime.training.api",))
    return {name: result.get("peak_rss_mib", result.get("error")) for name, result in floors.items()}


def measure_flex(subjects: Subjects, settings: runs.Settings, env: ReadyVenv, workdir: str,
                 progress=print) -> tuple[list[Measurement], dict]:
    runtime = "tf.lite (tensorflow 2.18.1) + Flex"
    if env.python is None:
        return [runs.failed_row("flex recipe", "(all)", env.error, runtime, THREADS, "xnnpack")], {"error": env.error}
    rows, facts = [], {"versions": env.versions, "sizes": {}, "flex_ops": {}, "on_tf_2_21": {}}
    for optimizer in OPTIMIZERS:
        progress(f"  Flex recipe ({optimizer}): convert in TF 2.18.1, time, memory")
        flex_path = os.path.join(workdir, f"flex_{optimizer}.tflite")
        built = run_child("flex_recipe.py", {"features": subjects.bottleneck_size, "classes": subjects.num_classes,
                                             "optimizer": optimizer, "learning_rate": subjects.learning_rate,
                                             "output": flex_path}, python=env.python, env=env.environ())
        if "error" in built:
            rows.append(runs.failed_row(f"flex recipe ({optimizer})", "convert", built["error"], runtime, THREADS, "xnnpack"))
            continue
        facts["sizes"][optimizer], facts["flex_ops"][optimizer] = built["size_bytes"], built["flex_ops"]
        checkpoint = os.path.join(workdir, f"flex_{optimizer}.ckpt")
        flex, ours = f"flex-{optimizer}", f"ours-{optimizer}"
        calls = _flex_calls(subjects, settings, flex, checkpoint)
        ours_head = runs.fused_calls(subjects, settings, ours)["head"]
        groups = [[{**flex_call, "runs": settings.head_runs}, {**ours_call}]   # same interpreter, interleaved
                  for flex_call, ours_call in zip(calls["train"], ours_head)]
        groups += [[{**c, "runs": settings.head_runs}] for c in calls["other"] + ours_head[-4:-2]]
        models = {flex: flex_path, ours: subjects.fused_paths[optimizer]}
        plan = {"interpreter": "tf.lite", "mode": "latency", "threads": THREADS, "xnnpack": True, "models": models,
                "groups": groups}
        result = run_child("tflite_model.py", plan, python=env.python, env=env.environ())
        names = {flex: f"flex recipe ({optimizer})", ours: f"ours ({optimizer}) in TF 2.18.1 tf.lite"}
        rows += runs.latency_rows(result, THREADS, True, runtime=runtime, scenario_names=names.get)
        facts["sizes"][f"{optimizer} checkpoint file"] = os.path.getsize(checkpoint) if os.path.exists(checkpoint) else None
        rows += _flex_memory(subjects, settings, env, flex_path, checkpoint, optimizer, runtime)
        facts["on_tf_2_21"][optimizer] = _flex_on_this_venv(subjects, settings, flex_path, checkpoint, optimizer)
    return rows, facts


def _flex_calls(subjects, settings, model: str, checkpoint: str) -> dict[str, list[dict]]:
    path = {"checkpoint_path": {"fill": "string", "value": checkpoint}}
    train = [{"id": f"{model}|train|{b}", "model": model, "signature": "train",
              "inputs": {"bottleneck": runs.bottleneck(subjects, b),
                         "label": runs.labels(subjects, b, one_hot=True, dtype="float32")}}
             for b in settings.train_batches]
    other = [{"id": f"{model}|infer (head only)|1", "model": model, "signature": "infer",
              "inputs": {"bottleneck": runs.bottleneck(subjects, 1)}},
             {"id": f"{model}|save|None", "model": model, "signature": "save", "inputs": path},
             {"id": f"{model}|restore|None", "model": model, "signature": "restore", "inputs": path}]
    return {"train": train, "other": other}


def _flex_memory(subjects, settings, env, flex_path, checkpoint, optimizer, runtime) -> list[Measurement]:
    one = runs.Settings(train_batches=(1,))
    calls = _flex_calls(subjects, one, "flex", checkpoint)
    head = calls["train"] + calls["other"]
    base_call = {"id": "base", "model": "base", "signature": runs.BASE_SIGNATURE,
                 "inputs": {"image": runs.image(subjects, 1)}}
    ours_calls = runs.fused_calls(subjects, one, "ours", batches=False)
    common = {"interpreter": "tf.lite", "mode": "memory", "threads": THREADS, "xnnpack": True}
    plans = {
        (f"flex recipe ({optimizer})", "memory: head signatures (train b1, infer, save, restore)"):
            {**common, "models": {"flex": flex_path}, "groups": [[c] for c in head]},
        (f"flex recipe ({optimizer})", "memory: app = base .tflite invoke + Flex head (every signature)"):
            {**common, "models": {"flex": flex_path, "base": subjects.base_path}, "groups": [[base_call]] + [[c] for c in head]},
        (f"ours ({optimizer}) in TF 2.18.1 tf.lite", "memory: every signature (batch 1)"):
            {**common, "models": {"ours": subjects.fused_paths[optimizer]},
             "groups": [[c] for c in ours_calls["image"] + ours_calls["head"]]},
    }
    return [runs.memory_row(scenario, what, run_child("tflite_model.py", plan, python=env.python, env=env.environ()),
                            runtime, THREADS, "xnnpack") for (scenario, what), plan in plans.items()]


def _flex_on_this_venv(subjects, settings, flex_path, checkpoint, optimizer) -> dict[str, dict[str, str]]:
    """The finding: the same Flex model in this project's TF 2.21 / LiteRT 2.3 (error text per signature)."""
    calls = _flex_calls(subjects, runs.Settings(train_batches=(1,)), "flex", checkpoint + ".tf221")
    outcome = {}
    for interpreter in ("ai_edge_litert", "tf.lite"):
        plan = {"interpreter": interpreter, "mode": "memory", "threads": THREADS, "xnnpack": True,
                "models": {"flex": flex_path}, "groups": [[c] for c in calls["train"] + calls["other"]]}
        result = run_child("tflite_model.py", plan)
        if "error" in result:
            outcome[interpreter] = {"(process)": result["error"]}
            continue
        outcome[f"{interpreter}: {result['runtime']}"] = {
            item["id"].split("|")[1]: item.get("error", "ran") for item in result["results"]}
    return outcome


def measure_tf_eager(subjects: Subjects, settings: runs.Settings, progress=print) -> tuple[list[Measurement], dict]:
    rows, facts = [], {}
    for optimizer in OPTIMIZERS:
        progress(f"  TF eager / tf.function ({optimizer}): time, memory")
        plan = {"features": subjects.bottleneck_size, "classes": subjects.num_classes, "optimizer": optimizer,
                "learning_rate": subjects.learning_rate, "batches": list(settings.train_batches), "threads": THREADS,
                "runs": settings.head_runs}
        result = run_child("tf_eager.py", {**plan, "mode": "latency"})
        rows += _peer_rows(result, lambda item: f"tf {item['variant']} ({optimizer})", "tensorflow 2.21")
        memory = run_child("tf_eager.py", {**plan, "mode": "memory", "batches": [1]})
        rows.append(runs.memory_row(f"tf eager ({optimizer})", "memory: train b1 (eager + tf.function), save, restore",
                                    memory, "tensorflow 2.21", THREADS, "n/a"))
        facts["runtime"] = result.get("runtime")
    return rows, facts


def measure_ort(subjects: Subjects, settings: runs.Settings, env: ReadyVenv, workdir: str,
                progress=print) -> tuple[list[Measurement], dict]:
    runtime = "onnxruntime-training 1.19.2"
    if env.python is None:
        return [runs.failed_row("ort training", "(all)", env.error, runtime, THREADS, "n/a")], {"error": env.error}
    rows, facts = [], {"versions": env.versions, "sizes": {}}
    for optimizer in OPTIMIZERS:
        progress(f"  ONNX Runtime training ({optimizer}): artifacts, time, memory")
        plan = {"features": subjects.bottleneck_size, "classes": subjects.num_classes, "optimizer": optimizer,
                "learning_rate": subjects.learning_rate, "batches": list(settings.train_batches), "threads": THREADS,
                "runs": settings.head_runs, "workdir": os.path.join(workdir, f"ort_{optimizer}")}
        os.makedirs(plan["workdir"], exist_ok=True)
        result = run_child("ort_training.py", {**plan, "mode": "latency"}, python=env.python, env=env.environ())
        rows += _peer_rows(result, lambda item: f"ort training ({optimizer})", runtime)
        facts["sizes"][optimizer] = result.get("sizes", {})
        memory = run_child("ort_training.py", {**plan, "mode": "memory", "batches": [1]}, python=env.python,
                           env=env.environ())
        rows.append(runs.memory_row(f"ort training ({optimizer})", "memory: train b1, save, restore (memory and file)",
                                    memory, runtime, THREADS, "n/a"))
    return rows, facts


def _peer_rows(result: dict, scenario_of_item, runtime: str) -> list[Measurement]:
    if "error" in result:
        return [runs.failed_row(scenario_of_item({"variant": "?"}), "(all)", result["error"], runtime, THREADS, "n/a")]
    rows = []
    for item in result["results"]:
        common = dict(scenario=scenario_of_item(item), signature=item["signature"], runtime=result["runtime"],
                      device=runs.DEVICE, threads=THREADS, delegate="n/a", batch=item["batch"], peak_memory_mib=None)
        if "error" in item:
            rows.append(Measurement(**common, runs=0, median_us=math.nan, min_us=None, max_us=None,
                                    extra={"error": item["error"]}))
        else:
            rows.append(Measurement(**common, runs=item["runs"], median_us=item["median_us"], min_us=item["min_us"],
                                    max_us=item["max_us"]))
    return rows


