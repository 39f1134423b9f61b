"""The scale of the base's bottleneck features, and the default learning rate it implies.

The cut base runs on a few inputs (synthetic: uniform over the input's range) and the largest
|bottleneck|^2 gives the stable SGD rate of runtime/training_watch.py (softmax cross-entropy:
4 / (1 + max |x|^2)); without --learning_rate, SGD and momentum start at that rate, Adam and
AdamW at Keras' 0.001 (their step does not scale with the features). Measured on three real
bases, the real features' largest norm was within 0.6x-1x of this synthetic one, and rates up
to 8x the bound stayed stable (runtime/SPEC.md#training).

Input ranges: integer inputs span their type; float inputs the base's known pixel range
(the embedded and converted bases: 0-255), else the range the base's own first QUANTIZE op
was calibrated for, else [-1, 1]. The summary says which was used.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from tflite_transfer.runtime import training_watch
from tflite_transfer.runtime.interpreter import new_interpreter

MEASURE_INPUTS = 16
ADAM_LEARNING_RATE = 0.001      # Keras' default: Adam's step is per coordinate, not per feature norm
PROBE = "feature_probe"


@dataclasses.dataclass(frozen=True)
class FeatureScale:
    max_norm2: float          # largest |bottleneck|^2 over the inputs
    mean_norm2: float
    inputs: str               # what the base ran on, for the summary


def measure(prepared, image_range: tuple[float, float] | None, seed: int = 0) -> FeatureScale:
    """Runs the cut base (cut.PreparedBase) on MEASURE_INPUTS synthetic inputs, one at a time
    (or in chunks of the base's own fixed batch)."""
    probe_bytes, input_tensor = _probe(prepared)
    interpreter, _ = new_interpreter(probe_bytes)
    runner = interpreter.get_signature_runner(PROBE)
    inputs, description = synthetic_inputs(input_tensor, image_range, prepared, seed)
    # A base with a fixed batch (its input's batch dimension not -1) runs in chunks of it.
    signature = input_tensor.shapeSignature if input_tensor.shapeSignature is not None else input_tensor.shape
    batch = max(int(signature[0]), 1) if len(signature) else 1
    chunks = [inputs[start:start + batch] for start in range(0, len(inputs) - batch + 1, batch)]
    features = np.concatenate([np.asarray(runner(image=chunk)["features"], np.float64).reshape(batch, -1)
                               for chunk in chunks])
    norms = (features ** 2).sum(axis=1)
    return FeatureScale(float(norms.max()), float(norms.mean()), description)


def default_learning_rate(scale: FeatureScale, loss: str, num_outputs: int, optimizer: str,
                          momentum: float = 0.0) -> float:
    """The learning rate a compile without --learning_rate uses."""
    bound = training_watch.stable_learning_rate(scale.max_norm2, loss, num_outputs, optimizer, momentum)
    return ADAM_LEARNING_RATE if bound is None else float(np.float32(bound))


def stable_bound(scale: FeatureScale, loss: str, num_outputs: int) -> float:
    """The SGD bound the summary prints."""
    return training_watch.stable_learning_rate(scale.max_norm2, loss, num_outputs, "sgd")


def synthetic_inputs(tensor, image_range, prepared, seed: int) -> tuple[np.ndarray, str]:
    from tflite_transfer.compiler.flatbuffer.model_io import TensorType, tensor_type_name  # noqa: PLC0415

    shape = (MEASURE_INPUTS, *[int(d) for d in tensor.shape[1:]])
    rng = np.random.default_rng(seed)
    kinds = {TensorType.UINT8: np.uint8, TensorType.INT8: np.int8, TensorType.INT16: np.int16}
    if tensor.type in kinds:
        info = np.iinfo(kinds[tensor.type])
        values = rng.integers(info.min, int(info.max) + 1, shape).astype(kinds[tensor.type])
        return values, f"{MEASURE_INPUTS} synthetic inputs uniform over {tensor_type_name(tensor.type)}"
    low, high = image_range or _quantize_range(prepared) or (-1.0, 1.0)
    values = rng.uniform(low, high, shape).astype(np.float32)
    return values, f"{MEASURE_INPUTS} synthetic inputs uniform in [{low:g}, {high:g}]"


def _quantize_range(prepared) -> tuple[float, float] | None:
    """The float range the base's QUANTIZE of its input was calibrated for, if it has one."""
    from tflite_transfer.compiler.flatbuffer import model_io  # noqa: PLC0415

    subgraph = prepared.model.subgraphs[prepared.entry_subgraph]
    image = int(subgraph.inputs[0])
    for op in subgraph.operators or []:
        code = model_io.builtin_code(prepared.model.operatorCodes[op.opcodeIndex])
        if code == model_io.schema.BuiltinOperator.QUANTIZE and int(op.inputs[0]) == image:
            quantization = subgraph.tensors[op.outputs[0]].quantization
            if quantization is None or quantization.scale is None or len(quantization.scale) != 1:
                return None
            scale, zero = float(quantization.scale[0]), int(quantization.zeroPoint[0])
            low, high = scale * (-128 - zero), scale * (127 - zero)
            return (round(low, 6), round(high, 6)) if high > low else None
    return None


def _probe(prepared):
    """A copy of the cut base whose entry subgraph is exposed as one signature."""
    from tflite_transfer.compiler.flatbuffer import graph, model_io  # noqa: PLC0415

    probe = copy.copy(prepared.model)
    subgraph = prepared.model.subgraphs[prepared.entry_subgraph]
    probe.signatureDefs = [graph.signature_def(PROBE, prepared.entry_subgraph, {"image": int(subgraph.inputs[0])},
                                               {"features": int(subgraph.outputs[0])})]
    return model_io.write_model_bytes(probe), subgraph.tensors[subgraph.inputs[0]]
