"""Smoke test of `python -m benchmarks.web` on the tiny base: the browser (single- and
multi-threaded wasm) and native timers (1 and N threads) run, interleaved, and the report holds
every figure and ratio (no time is asserted)."""

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
    threads = report["summary"]["threads"]
    rows = {(m["signature"], m["batch"], m["runtime"].split()[0], m["threads"]) for m in report["measurements"]}
    expected = {("load", 1), ("infer", 1), ("train_images", 1), ("train", 1), ("train", 4)}
    assert rows == {(s, b, r, t) for s, b in expected for r in ("LiteRT.js", "ai-edge-litert") for t in {1, threads}}
    assert len(report["measurements"]) == 4 * len(expected)          # threads off and on, browser and native
    assert all(m["runs"] == 4 and m["median_us"] > 0 for m in report["measurements"])
    for ratios in report["summary"]["ratios"].values():
        assert set(ratios) == {f"{s} batch {b}" for s, b in expected}
    assert set(report["summary"]["ratios"]) == {"browser_threads_speedup", "native_threads_speedup",
                                               "browser_vs_native_1_thread", "browser_vs_native_n_threads"}
    text = markdown_path.read_text()
    assert f"browser 1 thread / {threads} threads" in text and "Physical limit" in text
