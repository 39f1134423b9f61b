"""Time (or measure the memory of) .tflite signatures in one interpreter, from a JSON plan.

    python tflite_model.py PLAN.json

Runs in this project's venv (ai_edge_litert, importing no TensorFlow) and in the Flex peer's
venv (tf.lite of TF 2.18.1, the newest whose Python interpreter links the Flex delegate).
Plan: {"interpreter": "ai_edge_litert" | "tf.lite", "mode": "latency" | "memory",
"threads": N, "xnnpack": bool, "models": {name: path},
"groups": [[call, ...], ...], "runs": {"min_runs", "max_runs", "budget_s"}}; a call is
{"id", "model", "signature", "inputs": {tensor: input spec}} or, for restore,
{"inputs_from": "<id of an earlier call>"}, which feeds that call's outputs back in.
The calls of one group are timed round-robin (the first call's optional "runs" overrides the
plan's for its group). Memory mode runs each call once, then reports
the process's peak RSS.
"""

from __future__ import annotations

import json
import sys

from timing import emit, error_text, make_input, peak_rss_mib, summary, time_calls


def _interpreter_api(name: str):
    if name == "ai_edge_litert":
        from importlib.metadata import version

        from ai_edge_litert import interpreter as litert
        return litert.Interpreter, litert.OpResolverType, f"ai_edge_litert {version('ai-edge-litert')}"
    import tensorflow as tf
    return tf.lite.Interpreter, tf.lite.experimental.OpResolverType, f"tf.lite (tensorflow {tf.__version__})"


def main() -> None:
    plan = json.load(open(sys.argv[1]))
    Interpreter, Resolver, runtime = _interpreter_api(plan["interpreter"])
    resolver = Resolver.AUTO if plan.get("xnnpack", True) else Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreters, runners, model_errors = {}, {}, {}
    for name, path in plan.get("models", {}).items():
        try:
            interpreters[name] = Interpreter(model_path=path, num_threads=plan.get("threads", 1),
                                             experimental_op_resolver_type=resolver)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            model_errors[name] = error_text(error)
    outputs, results = {}, []

    def prepare(call):
        """A zero-argument callable that runs one signature on pre-built inputs."""
        if call["model"] in model_errors:
            raise RuntimeError(model_errors[call["model"]])
        key = (call["model"], call["signature"])
        if key not in runners:
            runners[key] = interpreters[call["model"]].get_signature_runner(call["signature"])
        runner = runners[key]
        if "inputs_from" in call:
            if call["inputs_from"] not in outputs:
                raise RuntimeError(f"needs the outputs of {call['inputs_from']}, which failed")
            inputs = dict(outputs[call["inputs_from"]])
        else:
            inputs = {tensor: make_input(spec, seed=index)
                      for index, (tensor, spec) in enumerate(sorted(call.get("inputs", {}).items()))}
        outputs[call["id"]] = {k: v.copy() for k, v in runner(**inputs).items()}  # first call: checks it runs
        return lambda: runner(**inputs)

    runs = plan.get("runs", {})
    for group in plan.get("groups", []):
        ready = []
        for call in group:
            try:
                ready.append((call, prepare(call)))
            except Exception as error:  # noqa: BLE001 - one failing signature must not hide the rest
                results.append({"id": call["id"], "error": error_text(error)})
        if plan["mode"] == "memory" or not ready:
            results += [{"id": call["id"], "runs": 1} for call, _ in ready]
            continue
        try:
            group_runs = {**runs, **group[0].get("runs", {})}
            times = time_calls([fn for _, fn in ready], group_runs.get("min_runs", 10),
                               group_runs.get("max_runs", 1000), group_runs.get("budget_s", 1.0),
                               warmup=group_runs.get("warmup", 2))
            results += [{"id": call["id"], **summary(t)} for (call, _), t in zip(ready, times)]
        except Exception as error:  # noqa: BLE001
            results += [{"id": call["id"], "error": error_text(error)} for call, _ in ready]
    emit({"runtime": runtime, "results": results, "model_errors": model_errors,
          "peak_rss_mib": peak_rss_mib()})


if __name__ == "__main__":
    main()
