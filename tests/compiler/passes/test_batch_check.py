"""The batch proof's comparison (compiler/passes/batch_check.py): bit for bit under XNNPACK,
within float32 rounding of each sample's features under the builtin kernels, and a genuine
batch mix caught whatever the kernels."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.fixed_batch_bases import fixed_batch_base
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.passes import batch_check, cut
from tflite_transfer.runtime.interpreter import new_interpreter

EPS32 = np.finfo(np.float32).eps


def features(seed: int = 0, rows: int = 3, size: int = 40) -> np.ndarray:
    """Pooled post-ReLU-like features: non-negative, a few large."""
    rng = np.random.default_rng(seed)
    return (rng.gamma(0.5, 2.0, (rows, size))).astype(np.float32)


def ulps_away(values: np.ndarray, steps: int, seed: int = 1) -> np.ndarray:
    """Each value moved by up to `steps` float32 spacings of its row's largest value: the size
    of a summation-order difference."""
    rng = np.random.default_rng(seed)
    scale = np.abs(values).max(axis=1, keepdims=True) * EPS32
    return (values + rng.integers(-steps, steps + 1, values.shape) * scale).astype(np.float32)


def test_bit_identical_rows_are_exact():
    values = features()
    comparison = batch_check.compare_batch_with_singles(values.copy(), values, "k")
    assert comparison.exact and comparison.ulps == 0 and comparison.within_rounding


@pytest.mark.parametrize("steps", [1, 9, 60])
def test_a_rounding_level_difference_is_accepted(steps):
    """9 ulps is the real audio base's 1.03e-6 relative (the figure that a fixed 1e-6 refused)."""
    singles = features()
    together = ulps_away(singles, steps)
    comparison = batch_check.compare_batch_with_singles(together, singles, "k")
    assert not comparison.exact and 0 < comparison.ulps <= steps + 1
    assert comparison.within_rounding


def test_a_difference_beyond_float32_rounding_is_refused():
    singles = features()
    comparison = batch_check.compare_batch_with_singles(ulps_away(singles, 500), singles, "k")
    assert comparison.ulps > batch_check.ROUNDING_ULPS and not comparison.within_rounding


def test_the_bound_is_per_sample_not_per_batch():
    """A sample with small features is not excused by another sample's large ones."""
    singles = features()
    singles[1] *= 1e-4
    together = singles.copy()
    together[1] += np.abs(singles[1]).max() * 1e-3          # 1e-3 of that sample: a mix, not rounding
    assert not batch_check.compare_batch_with_singles(together, singles, "k").within_rounding


def test_integer_outputs_must_be_equal():
    singles = np.arange(12, dtype=np.int8).reshape(3, 4)
    together = singles.copy()
    together[2, 1] += 1
    assert not batch_check.compare_batch_with_singles(together, singles, "k").within_rounding


def test_nan_where_the_singles_have_none_is_refused():
    singles = features()
    together = singles.copy()
    together[0, 0] = np.nan
    assert not batch_check.compare_batch_with_singles(together, singles, "k").within_rounding


def test_a_genuine_batch_mix_is_caught_with_both_kernel_sets(tmp_path):
    """The `mixing` base subtracts the batch mean from its features: each sample's output
    depends on the others. The proof refuses it at its first check (XNNPACK, bit for bit), and
    the builtin kernels' run alone is far beyond the rounding bound as well."""
    data, name = fixed_batch_base("mixing")
    prepared = cut.prepare_base(model_io.read_model_bytes(data), name, "mixing.tflite")
    entry = prepared.entry_subgraph
    bottleneck = int(prepared.model.subgraphs[entry].outputs[0])
    problem, comparisons = batch_check.run_batch_against_singles(prepared.model, entry, bottleneck, 3)
    assert problem is not None and "differs from 3 single calls" in problem and "XNNPACK" in problem
    assert len(comparisons) == 1 and comparisons[0].ulps > 1e3 * batch_check.ROUNDING_ULPS
    probe = batch_check._probe_model(prepared.model, entry, bottleneck)
    runner = new_interpreter(probe, xnnpack=False)[0].get_signature_runner(batch_check.PROBE)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 16, 12, 3)).astype(np.float32)
    singles = np.concatenate([runner(image=images[i:i + 1])["features"] for i in range(3)])
    builtin = batch_check.compare_batch_with_singles(runner(image=images)["features"], singles, "builtin")
    assert builtin.ulps > 1e3 * batch_check.ROUNDING_ULPS and not builtin.within_rounding
