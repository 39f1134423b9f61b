"""ONNX Runtime training 1.19.2 (its own venv: onnxruntime-training, onnx 1.16.2, torch): the
same head, from the same initial weights, built with ORT's own tooling.

The head is an ONNX graph written directly, as PyTorch exports nn.Linear (Gemm with
transB=1, kernel [units, inputs] like ours; Relu between layers), so no exporter version is
involved. `onnxruntime.training.artifacts.generate_artifacts` adds the cross-entropy loss, the
gradient graph and the optimizer (SGD, or AdamW with weight decay 0 = Adam: ORT 1.19 has no
plain Adam). One step = module(bottleneck, labels); optimizer.step(); module.lazy_reset_grad().

load: {"weights": npz, "layers": [{"kernel", "bias", "activation"}], "optimizer", "learning_rate",
       "workdir", "inputs": dir}
"""

from __future__ import annotations

import os

import numpy as np

from protocol import load_inputs, serve


def build_artifacts(request) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.training import artifacts, onnxblock

    weights = np.load(request["weights"])
    nodes, initializers, trainable, current = [], [], [], "bottleneck"
    for index, layer in enumerate(request["layers"]):
        kernel, bias = weights[layer["kernel"]], weights[layer["bias"]]
        output = f"layer_{index}"
        nodes.append(helper.make_node("Gemm", [current, layer["kernel"], layer["bias"]], [output], transB=1))
        if layer["activation"] == "relu":
            nodes.append(helper.make_node("Relu", [output], [f"{output}_relu"]))
            output = f"{output}_relu"
        initializers += [numpy_helper.from_array(kernel, layer["kernel"]),
                         numpy_helper.from_array(bias, layer["bias"])]
        trainable += [layer["kernel"], layer["bias"]]
        current = output
    features, classes = weights[request["layers"][0]["kernel"]].shape[1], weights[request["layers"][-1]["bias"]].shape[0]
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("bottleneck", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", classes])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    optimizer = (artifacts.OptimType.SGD if request["optimizer"] == "sgd"
                 else onnxblock.optim.AdamW(weight_decay=0.0))
    artifacts.generate_artifacts(model, requires_grad=trainable, loss=artifacts.LossType.CrossEntropyLoss,
                                 optimizer=optimizer, artifact_directory=request["workdir"])


def load(request):
    import onnxruntime
    onnxruntime.set_default_logger_severity(3)
    from onnxruntime.training.api import CheckpointState, Module, Optimizer

    if request["optimizer"] not in ("sgd", "adam"):
        raise ValueError(f"no ORT optimizer for {request['optimizer']}")
    os.makedirs(request["workdir"], exist_ok=True)
    build_artifacts(request)
    workdir = request["workdir"]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    state = CheckpointState.load_checkpoint(os.path.join(workdir, "checkpoint"))
    module = Module(os.path.join(workdir, "training_model.onnx"), state,
                    os.path.join(workdir, "eval_model.onnx"), session_options=options)
    optimizer = Optimizer(os.path.join(workdir, "optimizer_model.onnx"), module)
    optimizer.set_learning_rate(request["learning_rate"])
    module.train()
    return ({"module": module, "optimizer": optimizer, "state": state, "inputs": request["inputs"]},
            {"runtime": f"onnxruntime-training {onnxruntime.__version__}"})


def make_step(trainer, batch):
    bottleneck, label = load_inputs(trainer["inputs"], batch)
    module, optimizer = trainer["module"], trainer["optimizer"]

    def step():
        module(bottleneck, label)
        optimizer.step()
        module.lazy_reset_grad()
    return step


if __name__ == "__main__":
    serve(load, make_step)
