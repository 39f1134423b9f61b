"""Smoke test of the host benchmark (`python -m benchmarks`): the whole code path on the small
MobileNetV2 (alpha 0.35, 96x96), one run per figure, no peer venvs. Checks the files are
written and parse; asserts no wall time (figures from a 1-run smoke test mean nothing)."""

import json
import math
import struct

import pytest

from benchmarks.host import runs as host
from benchmarks.host.benchmark import run_benchmark
from benchmarks.common.report import read_report


@pytest.fixture(scope="module")
def written(small_mobilenet_path, tmp_path_factory):
    from tflite_transfer.compiler.base import sources

    base = sources.load_base(sources.BaseOptions(base=small_mobilenet_path), lambda m: None)
    results_dir = tmp_path_factory.mktemp("bench-results")
    files = run_benchmark(results_dir, settings=host.Settings.quick(), peers=False, base=base,
                          progress=lambda m: None)
    return files


def test_json_report_has_every_signature_and_scenario(written):
    report = read_report(written["json"])
    assert report.title == "host benchmark"
    timed = {(m.scenario, m.signature, m.batch, m.delegate) for m in report.measurements if not m.failed
             and not math.isnan(m.median_us)}
    for optimizer in ("sgd", "adam"):
        for signature, batch in [("load", 1), ("infer", 1), ("train", 1), ("train", 8), ("train_images", 1),
                                 ("save", None), ("restore", None), ("set_learning_rate", None)]:
            for delegate in ("xnnpack", "none (builtin kernels)"):
                assert (f"ours ({optimizer})", signature, batch, delegate) in timed
    assert ("base alone", "serving_default", 1, "xnnpack") in timed
    assert any(m.scenario.startswith("floor") for m in report.measurements)
    failed = [m for m in report.measurements if m.failed]
    assert not failed, failed
    memory = [m for m in report.measurements if m.peak_memory_mib is not None]
    assert {m.scenario for m in memory} >= {"base alone", "ours (sgd)", "ours (adam)"}
    assert all(m.peak_memory_mib > 1 for m in memory)
    ratios = report.summary["ratios"]
    infer_ratio = [r for r in ratios if r["comparison"] == "fused infer / base alone"]
    assert infer_ratio and all(r["ratio"] > 0 for r in infer_ratio)
    assert report.summary["sizes"]["fused"]["sgd"] > report.summary["sizes"]["base"]
    json.loads(written["json"].read_text())   # strict JSON (no NaN)


def test_markdown_report_has_ratios_sizes_and_the_table(written):
    text = written["markdown"].read_text(encoding="utf-8")
    for heading in ("# host benchmark", "## Headline ratios", "## File sizes", "## Every measurement", "## Plots"):
        assert heading in text
    assert "| ours (adam) | train |" in text


def test_png_plots_are_written(written):
    assert len(written["png"]) == 3
    for path in written["png"]:
        header = path.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", header[16:24])
        assert width > 100 and height > 100
        assert path.name in written["markdown"].read_text(encoding="utf-8")
