"""The training-speed sweep's parts (benchmarks/speed): the step-cost arithmetic, the ratio
statistics, the profile's attribution of call stacks, and the worker protocol end to end on a
real compiled 1280->4 model (two real LiteRT workers in alternating blocks). No wall time is
asserted: a test's timings mean nothing."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from benchmarks.speed import bound, profile, subjects
from benchmarks.speed.sweep import RowResult, Worker, run_row

SOFTMAX_1000 = ({"shape": [1000, 1280]},)
MLP = ({"shape": [256, 1280]}, {"shape": [100, 256]})


def test_step_cost_counts_passes_over_the_weights_and_flops():
    weights = 4 * (1000 * 1280 + 1000)
    sgd = bound.step_cost(SOFTMAX_1000, "sgd", 8)
    adam = bound.step_cost(SOFTMAX_1000, "adam", 8)
    assert sgd.weight_bytes == adam.weight_bytes == weights
    assert sgd.traffic_bytes == 5 * weights and adam.traffic_bytes == 9 * weights
    assert sgd.working_set_bytes == 2 * weights and adam.working_set_bytes == 4 * weights
    assert sgd.flops == 2 * 8 * 1000 * 1280 * 2
    # A hidden layer also back-propagates to its input: 3 products instead of 2.
    assert bound.step_cost(MLP, "sgd", 1).flops == 2 * (256 * 1280 * 2 + 100 * 256 * 3)
    assert sgd.bound_us(1e9, 1e18) == pytest.approx(1e6 * sgd.traffic_bytes / 1e9)
    assert sgd.bound_us(1e18, 1e9) == pytest.approx(1e6 * sgd.flops / 1e9)


def test_copy_sizes_cover_every_working_set_and_dram():
    costs = [bound.step_cost(SOFTMAX_1000, o, 1) for o in ("sgd", "adam")]
    sizes = bound.copy_sizes(costs)
    assert bound.DRAM_COPY_BYTES in sizes
    measured = {str(size): float(size) for size in sizes}
    for cost in costs:
        assert bound.bandwidth_for(cost, measured) == pytest.approx(cost.working_set_bytes / 2, rel=1e-3)


def test_row_statistics_and_wide_spread():
    steady = RowResult("h", "sgd", 8, "peer", [1.0] * 5, [2.0] * 5, [0.5, 0.5, 0.5, 0.5, 0.5])
    assert steady.ratio == 0.5 and not steady.wide
    noisy = RowResult("h", "sgd", 8, "peer", [1.0] * 4, [1.0] * 4, [0.5, 1.0, 1.5, 2.0])
    low, high = noisy.ratio_iqr
    assert (low, high) == (0.875, 1.625) and noisy.wide
    assert noisy.to_json()["wide_spread"] is True
    assert math.isnan(RowResult("h", "sgd", 8, "peer", [], [], [], "failed").ratio)


@pytest.mark.parametrize("stack,expected", [
    (["__memcpy_avx512_unaligned_erms", "pthreadpool_parallelize_1d", "xnn_run_operator_with_index"], "copy (XNNPACK)"),
    (["xnn_f32_vsub_ukernel__avx512f_u32", "xnn_run_operator_with_index"], "SUB (XNNPACK)"),
    (["xnn_f32_gemm_minmax_ukernel_7x32", "xnn_compute_grouped_gemm"], "FULLY_CONNECTED / BATCH_MATMUL (XNNPACK gemm)"),
    (["Eigen::internal::general_matrix_vector_product<long, float>", "tflite::cpu_backend_gemm::detail::Run",
      "tflite::ops::builtin::fully_connected::Eval<(tflite::ops::builtin::fully_connected::KernelType)1>"],
     "FULLY_CONNECTED"),
    (["Eigen::internal::gebp_kernel<float>", "[unknown]"], "Eigen GEMM (builtin kernel, stack not unwound)"),
    (["tflite::Subgraph::InvokeImpl", "tflite::Subgraph::Invoke"], "interpreter (TFLite, between ops)"),
    (["_PyEval_EvalFrameDefault", "Py_RunMain"], "Python, binding and the rest of the process"),
])
def test_profile_attributes_a_stack_to_its_op(stack, expected):
    assert profile.classify(stack) == expected


def test_profile_parses_perf_script_blocks():
    text = ("python 1 1.0: 500000 cpu-clock:\n\t  9f07f3 xnn_f32_vsub_ukernel__avx512f_u32+0x93 (/lib.so)\n"
            "\t  8566d5 xnn_run_operator_with_index+0x245 (/lib.so)\n\n"
            "python 1 1.1: 500000 cpu-clock:\n\t  1a6ce2 cfunction_call+0x62 (/libpython.so)\n")
    counts = profile.parse_perf_script(text)
    assert counts == {"SUB (XNNPACK)": 1, "Python, binding and the rest of the process": 1}


@pytest.fixture(scope="module")
def small_sweep_inputs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("speed")
    built = subjects.build_subjects(workdir, heads=(("1280->4", "softmax", 4),), optimizers=("sgd",),
                                    progress=lambda m: None)
    inputs = subjects.write_inputs(workdir / "inputs", (4,), batches=(1, 8))
    return built[0], inputs


def test_workers_alternate_blocks_on_a_real_model(small_sweep_inputs):
    subject, inputs = small_sweep_inputs
    np.testing.assert_array_equal(np.load(subject.weights_path)[subject.layers[0]["kernel"]].shape, [4, 1280])
    workers = [Worker(name, "litert_worker.py", sys.executable) for name in ("ours", "also ours")]
    try:
        for worker in workers:
            assert worker.request(cmd="load", key=subject.key, model=subject.model_path, inputs=inputs)["ok"]
        row = run_row(*workers, subject.key, 8, rounds=3, budget_ms=2, min_calls=3, head="1280->4", optimizer="sgd")
        assert row.error is None and len(row.ratios) == 3 and all(r > 0 for r in row.ratios)
        assert "error" in workers[0].request(cmd="time", key="no such model", batch=8, budget_ms=1, min_calls=1)
        machine = workers[0].request(cmd="load", key="machine", probe="machine", copy_bytes=[1 << 16])
        assert machine["copy_bandwidth_bytes_per_s"][str(1 << 16)] > 0 and machine["matmul_flops_per_s"] > 0
    finally:
        for worker in workers:
            worker.close()
