"""Runs a fused model's base, up to the user's bottleneck, on k images at once and on each
image alone, and compares: the proof that a base is batch-agnostic (compiler/passes/batch_agnostic.py).

The base's entry subgraph is exposed under a probe signature (input: the image, output: the
bottleneck before our adapter) in a copy of the model; nothing of the probe is written out.
Both interpreter configurations a runtime uses are run (LiteRT's default XNNPACK delegate and
the builtin kernels), each compared against itself: bit-identity across batch sizes holds
only under the same kernels (see ../shared/NOTES-tflite.md).
"""

from __future__ import annotations

import copy

import numpy as np

from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.flatbuffer.model_io import TensorType
from tflite_transfer.runtime.interpreter import new_interpreter

PROBE = "batch_probe"
_NUMPY_TYPES = {TensorType.UINT8: np.uint8, TensorType.INT8: np.int8,
                TensorType.FLOAT32: np.float32, TensorType.INT16: np.int16}


def _probe_model(model: model_io.ModelT, base_subgraph: int, cut: int) -> bytes:
    probe = copy.copy(model)
    probe.subgraphs = list(model.subgraphs)
    subgraph = copy.copy(model.subgraphs[base_subgraph])
    subgraph.outputs = [cut]
    probe.subgraphs[base_subgraph] = subgraph
    probe.signatureDefs = [graph.signature_def(PROBE, base_subgraph, {"image": int(subgraph.inputs[0])},
                                               {"features": cut})]
    return model_io.write_model_bytes(probe)


def _images(tensor: model_io.schema.TensorT, count: int, seed: int = 0) -> np.ndarray:
    dtype = _NUMPY_TYPES.get(tensor.type)
    if dtype is None:
        raise ValueError(f"image type {model_io.tensor_type_name(tensor.type)}")
    shape = (count, *[int(d) for d in tensor.shape[1:]])
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    return rng.uniform(-1.0, 1.0, shape).astype(dtype)


def _interpreters(model_bytes: bytes):
    """(label, interpreter) with XNNPACK and with builtin kernels only."""
    for xnnpack, kernels in ((True, "XNNPACK"), (False, "builtin kernels")):
        interpreter, name = new_interpreter(model_bytes, xnnpack=xnnpack)
        yield f"{name} {kernels}", interpreter


def run_batch_against_singles(model: model_io.ModelT, base_subgraph: int, cut: int,
                              batch: int) -> tuple[str | None, float]:
    """(problem or None, largest |batch - singles| / max |singles|) over both interpreter
    configurations; 0.0 means bit for bit."""
    image_tensor = model.subgraphs[base_subgraph].tensors[model.subgraphs[base_subgraph].inputs[0]]
    try:
        images = _images(image_tensor, batch)
    except ValueError as error:
        return f"cannot make test images ({error})", 0.0
    largest = 0.0
    try:
        interpreters = list(_interpreters(_probe_model(model, base_subgraph, cut)))
    except (RuntimeError, ValueError) as error:  # a damaged base: unknown op version, bad params
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"the base does not load in the interpreter: {first}", 0.0
    for label, interpreter in interpreters:
        runner = interpreter.get_signature_runner(PROBE)
        try:
            singles = [np.array(runner(image=images[i:i + 1])["features"]) for i in range(batch)]
            together = np.array(runner(image=images)["features"])
        except Exception as error:  # noqa: BLE001 - the interpreter raises RuntimeError/ValueError
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return f"at batch {batch} in {label}: {first}", 0.0
        expected = np.concatenate(singles)
        if together.shape != expected.shape:
            return (f"at batch {batch} in {label} the bottleneck has shape {list(together.shape)}, "
                    f"expected {list(expected.shape)}"), 0.0
        if not np.array_equal(together, expected, equal_nan=np.issubdtype(expected.dtype, np.floating)):
            difference = np.abs(together.astype(np.float64) - expected.astype(np.float64))
            scale = max(float(np.nanmax(np.abs(expected.astype(np.float64)))),
                        float(np.nanmax(np.abs(together.astype(np.float64)))), np.finfo(np.float32).tiny)
            relative = float(np.nanmax(difference)) / scale if difference.size else 0.0
            largest = max(largest, relative if np.isfinite(relative) else np.inf)
    return None, largest
