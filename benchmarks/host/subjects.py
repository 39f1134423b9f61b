"""What the host benchmark measures: the base, our fused models (SGD, Adam) and a trivial floor
model, written to a work folder once per run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class Subjects:
    base_path: str
    base_description: str
    image_shape: tuple[int, ...]     # one image, without the batch axis
    bottleneck_size: int
    num_classes: int
    learning_rate: float
    fused_paths: dict[str, str]      # optimizer -> fused model
    head_sizes: dict[str, int]       # optimizer -> the converted head alone, bytes
    state_bytes: dict[str, int]      # optimizer -> bytes of everything `save` returns
    floor_path: str
    compile_seconds: float


def build_subjects(workdir: str | Path, alpha: float, image_size: int, num_classes: int,
                   learning_rate: float, progress=print, base=None) -> Subjects:
    """Compile the fused models from the embedded int8 MobileNetV2 (or a given BaseSource)."""
    import time

    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler import pipeline

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if base is None:
        progress(f"building the int8 MobileNetV2 alpha {alpha} {image_size}x{image_size} base")
        base = sources.load_base(sources.BaseOptions(alpha=alpha, image_size=image_size), progress=lambda m: None)
    base_path = workdir / "base.tflite"
    base_path.write_bytes(base.tflite)
    fused_paths, head_sizes, state_bytes = {}, {}, {}
    bottleneck_size = image_shape = None
    for optimizer in OPTIMIZERS:
        progress(f"compiling the fused model: softmax head, {num_classes} classes, {optimizer}")
        result = pipeline.compile_from_base(
            base, pipeline.HeadOptions(num_classes=num_classes, optimizer=optimizer,
                                       learning_rate=learning_rate),
            verify_steps=0, progress=lambda m: None)
        path = workdir / f"fused_{optimizer}.tflite"
        path.write_bytes(result.model_bytes)
        fused_paths[optimizer], head_sizes[optimizer] = str(path), len(result.head.tflite)
        bottleneck_size, image_shape, state_bytes[optimizer] = _describe(str(path))
    floor_path = workdir / "floor.tflite"
    floor_path.write_bytes(build_floor_model())
    return Subjects(str(base_path), base.description, image_shape, bottleneck_size, num_classes,
                    learning_rate, fused_paths, head_sizes, state_bytes, str(floor_path),
                    time.perf_counter() - start)


def _describe(path: str) -> tuple[int, tuple[int, ...], int]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    load = interpreter.get_signature_runner("load")
    image_shape = tuple(int(d) for d in load.get_input_details()["image"]["shape"][1:])
    bottleneck_size = int(load.get_output_details()["bottleneck"]["shape"][-1])
    state = interpreter.get_signature_runner("save")()
    return bottleneck_size, image_shape, int(sum(np.asarray(v).nbytes for v in state.values()))


def build_floor_model() -> bytes:
    """One signature `floor(x[1]) -> y[1]` holding one ADD: what a signature call costs when
    the graph does (almost) nothing (the interpreter's and the Python binding's overhead)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    class Floor(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
        def floor(self, x):
            return {"y": x + 1.0}

    module = Floor()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.floor.get_concrete_function()], module)
    return converter.convert()
