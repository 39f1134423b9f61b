"""Training-speed sweep (`python -m benchmarks.speed`): our train step against ONNX Runtime
training and ExecuTorch, interleaved in long-lived workers, and against the physical limit."""
