"""Smoke test of `python -m benchmarks.web` on the tiny base: the browser and native timers
run, alternate, and the report holds every figure and ratio (no time is asserted)."""

from __future__ import annotations

import json

from benchmarks.web.measure import Settings, run_benchmark
from tests.web.web_fixtures import require_tool, web_packages  # noqa: F401


def test_web_benchmark_writes_every_figure(web_packages, tiny_classifier_path, tiny_pool_name, tmp_path):
    from tflite_transfer.compiler.base import sources

    require_tool("chromium")
    base = sources.load_base(sources.BaseOptions(base=tiny_classifier_path, base_output=tiny_pool_name), lambda m: None)
    json_path, markdown_path = run_benchmark(Settings(train_batch=4, rounds=2, runs=2, warmup=1), tmp_path,
                                             progress=lambda m: None, base=base)
    report = json.loads(json_path.read_text())
    rows = {(m["signature"], m["batch"], m["runtime"].split()[0]) for m in report["measurements"]}
    expected = {("load", 1), ("infer", 1), ("train_images", 1), ("train", 1), ("train", 4)}
    assert rows == {(s, b, r) for s, b in expected for r in ("LiteRT.js", "ai-edge-litert")}
    assert all(m["runs"] == 4 and m["median_us"] > 0 for m in report["measurements"])
    assert set(report["summary"]["ratios"]) == {f"{s} batch {b}" for s, b in expected}
    assert "browser / native" in markdown_path.read_text()
