"""Compiles the static-batch models, times them in the browser and natively (alternating),
and writes the report. The browser side is runtime/web/browser/bench_driver.mjs."""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common.report import Measurement, format_duration, machine_facts, write_report

WEB_DIR = Path(__file__).resolve().parents[2] / "runtime" / "web"
BROWSER, NATIVE = "browser", "native"


@dataclasses.dataclass(frozen=True)
class Settings:
    alpha: float = 1.0
    image_size: int = 224
    train_batch: int = 16
    rounds: int = 5
    runs: int = 20
    warmup: int = 3


@dataclasses.dataclass(frozen=True)
class Case:
    """One timed figure: a signature of one of the two models, at its static batch."""
    model: str          # file name under the served /models/
    signature: str
    batch: int


def compile_models(settings: Settings, directory: Path, progress=print, base=None) -> dict[int, Path]:
    """{train batch: path} for train batch 1 and settings.train_batch (image batch 1 both), on
    the embedded MobileNetV2 or on a given BaseSource (the smoke test's tiny base)."""
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler.passes import batch
    from tflite_transfer.compiler import pipeline

    if base is None:
        progress(f"building the int8 MobileNetV2 alpha {settings.alpha} {settings.image_size}x{settings.image_size}")
        base = sources.load_base(sources.BaseOptions(alpha=settings.alpha, image_size=settings.image_size),
                               progress=lambda m: None)
    paths = {}
    for train_batch in sorted({1, settings.train_batch}):
        progress(f"compiling a softmax head (4 classes, SGD) with --batch=1,{train_batch}")
        result = pipeline.compile_from_base(base, pipeline.HeadOptions(num_classes=4, learning_rate=0.01),
                                            verify_steps=0, progress=lambda m: None,
                                            batch_options=batch.BatchOptions(1, train_batch))
        paths[train_batch] = directory / f"model_batch_1_{train_batch}.tflite"
        paths[train_batch].write_bytes(result.model_bytes)
    return paths


def cases(paths: dict[int, Path], train_batch: int) -> list[Case]:
    one = paths[1].name
    return [Case(one, "load", 1), Case(one, "infer", 1), Case(one, "train_images", 1),
            Case(one, "train", 1), Case(paths[train_batch].name, "train", train_batch)]


class NativeTimer:
    """ai-edge-litert at 1 thread (XNNPACK default), inputs like the page's."""

    def __init__(self, paths: dict[int, Path]):
        from ai_edge_litert.interpreter import Interpreter

        self.runners = {}
        for path in paths.values():
            interpreter = Interpreter(model_path=str(path), num_threads=1)
            self.runners[path.name] = {key: interpreter.get_signature_runner(key) for key in interpreter.get_signature_list()}

    def time(self, case: Case, runs: int, warmup: int) -> list[float]:
        runner = self.runners[case.model][case.signature]
        inputs = {}
        for name, detail in runner.get_input_details().items():
            count = int(np.prod(detail["shape"]))
            values = (np.arange(count) * 37) % 256
            if detail["dtype"] == np.int32:
                values = np.zeros(count)
            elif detail["dtype"] == np.float32 and name != "image":
                values = values / 255
            inputs[name] = values.astype(detail["dtype"]).reshape(detail["shape"])
        times = []
        for index in range(warmup + runs):
            start = time.perf_counter_ns()
            runner(**inputs)
            if index >= warmup:
                times.append((time.perf_counter_ns() - start) / 1000)
        self.runners[case.model]["initialize"]()
        return times


class BrowserTimer:
    """One headless Chromium page for the whole run (runtime/web/browser/bench_driver.mjs)."""

    def __init__(self, origin: str):
        node = shutil.which("node")
        if node is None:
            raise SystemExit("node is not installed: run .ci/install.d/50-web.sh")
        self.process = subprocess.Popen([node, "browser/bench_driver.mjs", origin], cwd=WEB_DIR, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, command: dict) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline() or '{"error": "the browser driver exited"}')
        if "error" in answer:
            raise RuntimeError(f"browser: {answer['error']}")
        return answer

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def run_benchmark(settings: Settings, results_dir, progress=print, base=None) -> tuple[Path, Path]:
    from tests.web.page_server import serve

    with tempfile.TemporaryDirectory(prefix="web-benchmark-") as workdir:
        paths = compile_models(settings, Path(workdir), progress, base)
        todo = cases(paths, settings.train_batch)
        with serve(WEB_DIR, Path(workdir), isolated=True) as origin:
            browser = BrowserTimer(origin)
            try:
                opened = {path.name: browser.ask({"open": f"/models/{path.name}"}) for path in paths.values()}
                browser_version = browser.ask({"version": True})["browser"]
                native = NativeTimer(paths)
                times = {(side, case): [] for side in (BROWSER, NATIVE) for case in todo}
                for round_index in range(settings.rounds):
                    progress(f"round {round_index + 1}/{settings.rounds}: browser, then native")
                    for case in todo:      # A B A B: the browser's calls, then the same natively
                        answer = browser.ask({"time": f"/models/{case.model}", "signatures": [case.signature],
                                              "runs": settings.runs, "warmup": settings.warmup})
                        times[BROWSER, case].append(answer[case.signature])
                        times[NATIVE, case].append(native.time(case, settings.runs, settings.warmup))
            finally:
                browser.close()
    scenario = (f"MobileNetV2 {settings.alpha} {settings.image_size} int8" if base is None else base.description) + \
        ", softmax 4 classes, SGD"
    return _write(settings, results_dir, todo, times, opened, browser_version, scenario)


def _runtime_names(browser_version: str) -> dict[str, str]:
    from importlib.metadata import version

    core = json.loads((WEB_DIR / "node_modules" / "@litertjs" / "core" / "package.json").read_text())["version"]
    return {BROWSER: f"LiteRT.js {core} wasm (Chromium {browser_version})",
            NATIVE: f"ai-edge-litert {version('ai-edge-litert')} (Python)"}


def _write(settings, results_dir, todo, times, opened, browser_version, scenario) -> tuple[Path, Path]:
    names = _runtime_names(browser_version)
    measurements, ratio_rows, summary = [], [], {"ratios": {}, "open_ms": {}}
    for case in todo:
        for side in (BROWSER, NATIVE):
            rounds = times[side, case]
            flat = [t for one in rounds for t in one]
            measurements.append(Measurement(scenario, case.signature, names[side], "this machine", 1, "XNNPACK",
                                            case.batch, len(flat), statistics.median(flat), min(flat), max(flat), None,
                                            {"round_medians_us": [statistics.median(one) for one in rounds]}))
        ratios = [statistics.median(b) / statistics.median(n) for b, n in zip(times[BROWSER, case], times[NATIVE, case])]
        key = f"{case.signature} batch {case.batch}"
        summary["ratios"][key] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        browser_median = statistics.median(t for one in times[BROWSER, case] for t in one)
        native_median = statistics.median(t for one in times[NATIVE, case] for t in one)
        ratio_rows.append(f"| `{case.signature}` | {case.batch} | {format_duration(browser_median)} | "
                          f"{format_duration(native_median)} | {statistics.median(ratios):.2f}x "
                          f"({min(ratios):.2f}–{max(ratios):.2f}) |")
    summary["open_ms"] = {name: answer["openMs"] for name, answer in opened.items()}
    section = "\n".join([
        "## Browser (wasm) vs native, 1 thread, medians",
        "",
        f"| signature | batch | {names[BROWSER]} | {names[NATIVE]} | browser / native (per-round spread) |",
        "|---|---:|---|---|---|",
        *ratio_rows,
        "",
        "Opening a model in the page (digest check, metadata, LiteRT.js compile): " +
        ", ".join(f"{name} {ms:.0f} ms" for name, ms in summary["open_ms"].items()) + ".",
    ])
    notes = [f"{settings.rounds} rounds x {settings.runs} timed calls (after {settings.warmup} untimed) per figure; "
             "browser and native alternate round by round.",
             "Browser: only `compiled.run` and reading its outputs are timed (inputs pre-built); LiteRT.js loads its "
             "single-threaded wasm (its `threads` option defaults to off). The page is cross-origin isolated (5 us "
             "clock); a sample repeats calls shorter than 2 ms and reports the time per call.",
             "Native: ai-edge-litert signature runner, num_threads=1, XNNPACK (the default delegate)."]
    return write_report(results_dir, "web-benchmark", measurements, machine_facts(), notes, summary, [section])
