"""Runs a fused model's base, up to the user's bottleneck, on k images at once and on each
image alone, and compares: the proof that a base is batch-agnostic (compiler/passes/batch_agnostic.py).

The base's entry subgraph is exposed under a probe signature (input: the image, output: the
bottleneck before our adapter) in a copy of the model; nothing of the probe is written out.
Both interpreter configurations a runtime uses are run, each compared against itself
(bit-identity across batch sizes holds only under the same kernels, ../shared/NOTES-tflite.md):
first LiteRT's default XNNPACK delegate, which must agree bit for bit (its kernels compute a
sample the same way at any batch), then the builtin kernels, which may differ by float32
rounding only (they switch between vector and scalar loops by size; bound: ROUNDING_ULPS).
"""

from __future__ import annotations

import copy
import dataclasses

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
    """(label, interpreter) with XNNPACK first, then builtin kernels only."""
    for xnnpack, kernels in ((True, XNNPACK), (False, BUILTIN)):
        interpreter, name = new_interpreter(model_bytes, xnnpack=xnnpack)
        yield f"{name} {kernels}", interpreter


# The tolerance of the builtin kernels' run, from float32 rounding (BUILD.md, "Batches").
# Summing the same n terms t_i in two orders (a vector loop at batch 3, a scalar one at batch 1)
# gives results that each differ from the exact sum by at most (n - 1) u sum|t_i|, u = eps/2
# (Higham, "Accuracy and Stability of Numerical Algorithms", eq. 3.5), so by at most
# (n - 1) eps sum|t_i| from each other. At the cut the terms are not visible; for the
# non-negative terms of pooled post-ReLU features sum|t_i| is the feature itself, bounded by the
# sample's largest feature. The bound is therefore stated per sample: |batch - single| <=
# ROUNDING_ULPS x eps32 x (that sample's largest |feature|), with ROUNDING_ULPS = 64 covering
# a reordering of sums of up to 65 terms of one sign (measured on a real audio base: 8.6, i.e.
# 1.03e-6 relative). A genuine batch mix moves a sample's features by a part of the other
# samples' features: the test base that subtracts the batch mean reads 8e6 ulps (1.0 relative),
# 1e5 times the bound (tests/compiler/passes/test_batch_check.py).
ROUNDING_ULPS = 64.0
EPS32 = float(np.finfo(np.float32).eps)
XNNPACK, BUILTIN = "XNNPACK", "builtin kernels"


@dataclasses.dataclass(frozen=True)
class BatchComparison:
    kernels: str               # e.g. "ai_edge_litert XNNPACK"
    exact: bool                # bit for bit
    ulps: float                # largest |batch - single| / (eps32 x the sample's largest |feature|)
    relative: float            # largest |batch - single| / largest |single| over the batch

    @property
    def within_rounding(self) -> bool:
        return self.exact or self.ulps <= ROUNDING_ULPS


def compare_batch_with_singles(together: np.ndarray, singles: np.ndarray, kernels: str) -> BatchComparison:
    """Batch k's rows against k single calls' rows. Integer outputs (a quantized cut) must be
    equal: integer kernels do not round differently by batch size."""
    exact = bool(np.array_equal(together, singles, equal_nan=np.issubdtype(singles.dtype, np.floating)))
    if exact:
        return BatchComparison(kernels, True, 0.0, 0.0)
    if not np.issubdtype(singles.dtype, np.floating):
        return BatchComparison(kernels, False, np.inf, np.inf)
    found = together.astype(np.float64).reshape(len(together), -1)
    expected = singles.astype(np.float64).reshape(len(singles), -1)
    difference = np.abs(found - expected)
    if not np.isfinite(difference).all():
        return BatchComparison(kernels, False, np.inf, np.inf)
    tiny = float(np.finfo(np.float32).tiny)
    row_scale = np.maximum(np.maximum(np.abs(expected).max(axis=1), np.abs(found).max(axis=1)), tiny)
    ulps = float((difference.max(axis=1) / (EPS32 * row_scale)).max())
    relative = float(difference.max() / max(float(np.abs(expected).max()), tiny))
    return BatchComparison(kernels, False, ulps, relative)


def run_batch_against_singles(model: model_io.ModelT, base_subgraph: int, cut: int,
                              batch: int) -> tuple[str | None, tuple[BatchComparison, ...]]:
    """(problem or None, one comparison per interpreter configuration). XNNPACK comes first and
    must be bit for bit; the builtin kernels must be bit for bit or within float32 rounding
    (ROUNDING_ULPS)."""
    image_tensor = model.subgraphs[base_subgraph].tensors[model.subgraphs[base_subgraph].inputs[0]]
    try:
        images = _images(image_tensor, batch)
    except ValueError as error:
        return f"cannot make test images ({error})", ()
    try:
        interpreters = list(_interpreters(_probe_model(model, base_subgraph, cut)))
    except (RuntimeError, ValueError) as error:  # a damaged base: unknown op version, bad params
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"the base does not load in the interpreter: {first}", ()
    comparisons = []
    for label, interpreter in interpreters:
        runner = interpreter.get_signature_runner(PROBE)
        try:
            singles = [np.array(runner(image=images[i:i + 1])["features"]) for i in range(batch)]
            together = np.array(runner(image=images)["features"])
        except Exception as error:  # noqa: BLE001 - the interpreter raises RuntimeError/ValueError
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return f"at batch {batch} in {label}: {first}", tuple(comparisons)
        expected = np.concatenate(singles)
        if together.shape != expected.shape:
            return (f"at batch {batch} in {label} the bottleneck has shape {list(together.shape)}, "
                    f"expected {list(expected.shape)}"), tuple(comparisons)
        comparison = compare_batch_with_singles(together, expected, label)
        comparisons.append(comparison)
        if not comparison.exact and (label.endswith(XNNPACK) or not comparison.within_rounding):
            allowed = "bit for bit" if label.endswith(XNNPACK) else f"{ROUNDING_ULPS:g} float32 ulps"
            return (f"batch {batch} differs from {batch} single calls in {label} by up to "
                    f"{comparison.ulps:.3g} float32 ulps of each sample's largest feature "
                    f"({comparison.relative:.2e} relative; allowed: {allowed})"), tuple(comparisons)
    return None, tuple(comparisons)
