"""ExecuTorch 1.5.1 on-device training (its own venv: executorch, torch 2.13): the same head
from the same initial weights, SGD only (1.5.1's training API has no Adam).

The head is torch nn.Linear layers (weight [units, inputs], like ours) plus
nn.CrossEntropyLoss, exported per batch size (ExecuTorch programs have static shapes) as a
joint forward+backward program (`_export_forward_backward`, `to_edge`, `to_executorch`),
loaded with `_load_for_executorch_for_training_from_buffer`. One step =
`forward_backward` then the runtime's SGD `optimizer.step(named_gradients())`.

load: {"weights": npz, "layers": [...], "optimizer": "sgd", "learning_rate", "inputs": dir}
"""

from __future__ import annotations

import numpy as np

from protocol import load_inputs, serve


def load(request):
    import torch

    if request["optimizer"] != "sgd":
        raise ValueError("ExecuTorch 1.5.1 training has SGD only")
    torch.set_num_threads(1)
    weights = np.load(request["weights"])
    return {"request": request, "weights": {k: weights[k] for k in weights.files}}, {
        "runtime": f"executorch {_version('executorch')} (torch {torch.__version__})"}


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


def make_step(trainer, batch):
    import torch
    from executorch.exir import to_edge
    from executorch.extension.training import (_load_for_executorch_for_training_from_buffer,
                                               get_sgd_optimizer)
    from torch.export import export
    from torch.export.experimental import _export_forward_backward

    request, weights = trainer["request"], trainer["weights"]
    layers = []
    for layer in request["layers"]:
        kernel, bias = weights[layer["kernel"]], weights[layer["bias"]]
        linear = torch.nn.Linear(kernel.shape[1], kernel.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel))
            linear.bias.copy_(torch.from_numpy(bias))
        layers.append(linear)
        if layer["activation"] == "relu":
            layers.append(torch.nn.ReLU())
    head = torch.nn.Sequential(*layers)

    class TrainingHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head, self.loss = head, torch.nn.CrossEntropyLoss()

        def forward(self, bottleneck, label):
            return (self.loss(self.head(bottleneck), label),)

    bottleneck, label = load_inputs(request["inputs"], batch)
    inputs = (torch.from_numpy(bottleneck), torch.from_numpy(label.astype(np.int64)))
    program = _export_forward_backward(export(TrainingHead(), inputs, strict=True))
    buffer = to_edge(program).to_executorch().buffer
    module = _load_for_executorch_for_training_from_buffer(buffer)
    module.forward_backward(method_name="forward", inputs=inputs)  # 1.5.1: before named_parameters
    optimizer = get_sgd_optimizer(module.named_parameters(), request["learning_rate"], 0, 0, 0, False)

    def step(keep_alive=(buffer, inputs)):  # the module reads the program buffer in place
        module.forward_backward(method_name="forward", inputs=inputs)
        optimizer.step(module.named_gradients())
    return step


if __name__ == "__main__":
    serve(load, make_step)
