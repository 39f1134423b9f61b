"""ONNX Runtime on-device training of the same head: artifacts from ORT's own tooling, timed.

    python ort_training.py PLAN.json     # in the ORT venv: onnxruntime-training 1.19.2, onnx 1.16.2, torch

The head is written directly as an ONNX graph (Gemm: bottleneck [batch, features] x W + b ->
logits) so no exporter version is involved; `onnxruntime.training.artifacts.generate_artifacts`
adds the cross-entropy loss, the gradient graph and the optimizer (SGD, or AdamW with weight
decay 0 = Adam: ORT 1.19 has no plain Adam). Labels are int64 class ids (ORT's
SoftmaxCrossEntropyLoss). One train step = `module(bottleneck, labels)`, `optimizer.step()`,
`module.lazy_reset_grad()`. Save/restore in memory = `get_contiguous_parameters` /
`copy_buffer_to_parameters` (parameters only); to a file = `CheckpointState.save_checkpoint`
(parameters and optimizer state) / `CheckpointState.load_checkpoint`.
Plan: {"mode": "latency" | "memory", "features", "classes", "optimizer", "learning_rate",
"batches", "threads", "workdir", "runs"}; prints {"runtime", "results", "sizes", "peak_rss_mib"}.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from timing import emit, error_text, make_input, peak_rss_mib, summary, time_calls


def build_artifacts(plan: dict) -> dict[str, int]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.training import artifacts, onnxblock

    features, classes = plan["features"], plan["classes"]
    rng = np.random.default_rng(0)
    kernel = (rng.standard_normal((features, classes)) * 0.01).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["bottleneck", "dense_kernel", "dense_bias"], ["logits"])],
        "head",
        [helper.make_tensor_value_info("bottleneck", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(kernel, "dense_kernel"),
                     numpy_helper.from_array(np.zeros(classes, np.float32), "dense_bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    optimizer = (artifacts.OptimType.SGD if plan["optimizer"] == "sgd"
                 else onnxblock.optim.AdamW(weight_decay=0.0))
    artifacts.generate_artifacts(model, requires_grad=["dense_kernel", "dense_bias"],
                                 loss=artifacts.LossType.CrossEntropyLoss, optimizer=optimizer,
                                 artifact_directory=plan["workdir"])
    return {name: os.path.getsize(os.path.join(plan["workdir"], name)) for name in sorted(os.listdir(plan["workdir"]))}


def main() -> None:
    plan = json.load(open(sys.argv[1]))
    import onnxruntime
    onnxruntime.set_default_logger_severity(3)
    from onnxruntime.training.api import CheckpointState, Module, Optimizer

    workdir = plan["workdir"]
    sizes = build_artifacts(plan) if plan["mode"] == "latency" or not os.path.exists(
        os.path.join(workdir, "checkpoint")) else {}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = plan["threads"]
    options.inter_op_num_threads = 1
    state = CheckpointState.load_checkpoint(os.path.join(workdir, "checkpoint"))
    module = Module(os.path.join(workdir, "training_model.onnx"), state,
                    os.path.join(workdir, "eval_model.onnx"), session_options=options)
    optimizer = Optimizer(os.path.join(workdir, "optimizer_model.onnx"), module)
    optimizer.set_learning_rate(plan["learning_rate"])
    module.train()

    def train_step(bottleneck, labels):
        def step():
            module(bottleneck, labels)
            optimizer.step()
            module.lazy_reset_grad()
        return step

    calls = {}
    for batch in plan["batches"]:
        bottleneck = make_input({"shape": [batch, plan["features"]], "range": [0, 6]}, seed=0)
        labels = make_input({"shape": [batch], "fill": "labels", "classes": plan["classes"], "dtype": "int64"}, seed=1)
        calls[("train", batch)] = train_step(bottleneck, labels)
    parameters = module.get_contiguous_parameters()
    checkpoint_path = os.path.join(workdir, "saved_checkpoint")
    calls[("save (parameters, in memory)", None)] = module.get_contiguous_parameters
    calls[("restore (parameters, in memory)", None)] = lambda: module.copy_buffer_to_parameters(parameters)
    calls[("save (checkpoint file)", None)] = lambda: CheckpointState.save_checkpoint(
        state, checkpoint_path, include_optimizer_state=True)
    calls[("restore (checkpoint file)", None)] = lambda: CheckpointState.load_checkpoint(checkpoint_path)

    results, runs = [], plan.get("runs", {})
    for (signature, batch), call in calls.items():
        try:
            if plan["mode"] == "memory":
                call()
                results.append({"signature": signature, "batch": batch, "runs": 1})
                continue
            times = time_calls([call], runs.get("min_runs", 10), runs.get("max_runs", 1000),
                               runs.get("budget_s", 1.0), warmup=runs.get("warmup", 2))[0]
            results.append({"signature": signature, "batch": batch, **summary(times)})
        except Exception as error:  # noqa: BLE001 - reported per call
            results.append({"signature": signature, "batch": batch, "error": error_text(error)})
    if sizes:
        sizes["saved_checkpoint"] = os.path.getsize(checkpoint_path) if os.path.exists(checkpoint_path) else None
    emit({"runtime": f"onnxruntime-training {onnxruntime.__version__}", "results": results, "sizes": sizes,
          "peak_rss_mib": peak_rss_mib()})


if __name__ == "__main__":
    main()
