"""Compiles the static-batch models, times them in the browser (LiteRT.js's single- and
multi-threaded wasm) and natively (1 and N threads), interleaved, and writes the report. The
browser side is runtime/web/browser/bench_driver.mjs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common.report import Measurement, format_duration, machine_facts, write_report

WEB_DIR = Path(__file__).resolve().parents[2] / "runtime" / "web"
# The four runtimes timed on every case: (browser page or native, threads on). "N" threads is
# the machine's core count (os.cpu_count(); the page's navigator.hardwareConcurrency).
BROWSER_1, BROWSER_N, NATIVE_1, NATIVE_N = "browser-1", "browser-N", "native-1", "native-N"
SIDES = (BROWSER_1, BROWSER_N, NATIVE_1, NATIVE_N)
PAGE = {BROWSER_1: "single", BROWSER_N: "threaded"}


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
    """ai-edge-litert at `threads` threads (XNNPACK default), inputs like the page's."""

    def __init__(self, paths: dict[int, Path], threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.runners = {}
        for path in paths.values():
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
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
    """Two headless Chromium pages for the whole run, LiteRT.js's single-threaded and its
    multi-threaded wasm (runtime/web/browser/bench_driver.mjs)."""

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
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # the driver hangs: it must not outlive the run
            self.process.kill()
            self.process.wait()


def run_benchmark(settings: Settings, results_dir, progress=print, base=None) -> tuple[Path, Path]:
    from tests.web.page_server import serve

    with tempfile.TemporaryDirectory(prefix="web-benchmark-") as workdir:
        paths = compile_models(settings, Path(workdir), progress, base)
        todo = cases(paths, settings.train_batch)
        with serve(WEB_DIR, Path(workdir), isolated=True) as origin:      # isolated: threads allowed
            browser = BrowserTimer(origin)
            try:
                opened = {(side, path.name): browser.ask({"page": PAGE[side], "open": f"/models/{path.name}"})
                          for side in (BROWSER_1, BROWSER_N) for path in paths.values()}
                browser_version = browser.ask({"version": True})["browser"]
                threads = opened[BROWSER_N, paths[1].name]["numThreads"]
                native = {NATIVE_1: NativeTimer(paths, 1), NATIVE_N: NativeTimer(paths, threads)}
                times = {(side, case): [] for side in SIDES for case in todo}
                for round_index in range(settings.rounds):
                    # A B C D, the order rotated each round so no side always runs first.
                    order = SIDES[round_index % len(SIDES):] + SIDES[:round_index % len(SIDES)]
                    progress(f"round {round_index + 1}/{settings.rounds}: {', '.join(order)}")
                    for case in todo:
                        for side in order:
                            times[side, case].append(_time(browser, native, side, case, settings))
            finally:
                browser.close()
    scenario = (f"MobileNetV2 {settings.alpha} {settings.image_size} int8" if base is None else base.description) + \
        ", softmax 4 classes, SGD"
    return _write(settings, results_dir, todo, times, opened, browser_version, scenario, threads)


def _time(browser: BrowserTimer, native: dict, side: str, case: Case, settings: Settings) -> list[float]:
    if side in native:
        return native[side].time(case, settings.runs, settings.warmup)
    answer = browser.ask({"page": PAGE[side], "time": f"/models/{case.model}", "signatures": [case.signature],
                          "runs": settings.runs, "warmup": settings.warmup})
    return answer[case.signature]


def _runtime_names(browser_version: str, threads: int) -> dict[str, str]:
    from importlib.metadata import version

    core = json.loads((WEB_DIR / "node_modules" / "@litertjs" / "core" / "package.json").read_text())["version"]
    browser = f"LiteRT.js {core} wasm (Chromium {browser_version})"
    native = f"ai-edge-litert {version('ai-edge-litert')} (Python)"
    return {BROWSER_1: f"{browser}, 1 thread", BROWSER_N: f"{browser}, {threads} threads",
            NATIVE_1: f"{native}, 1 thread", NATIVE_N: f"{native}, {threads} threads"}


def _ratio(times, case, slower: str, faster: str) -> dict:
    """Median and spread of the per-round ratios median(slower) / median(faster)."""
    ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(times[slower, case], times[faster, case])]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def _cell(ratio: dict) -> str:
    return f"{ratio['median']:.2f}x ({ratio['min']:.2f}–{ratio['max']:.2f})"


# The ratios reported, as (summary key, column title, numerator, denominator).
RATIOS = (("browser_threads_speedup", "browser 1 thread / N threads", BROWSER_1, BROWSER_N),
          ("native_threads_speedup", "native 1 thread / N threads", NATIVE_1, NATIVE_N),
          ("browser_vs_native_1_thread", "browser / native, 1 thread", BROWSER_1, NATIVE_1),
          ("browser_vs_native_n_threads", "browser / native, N threads", BROWSER_N, NATIVE_N))


def _write(settings, results_dir, todo, times, opened, browser_version, scenario, threads) -> tuple[Path, Path]:
    names = _runtime_names(browser_version, threads)
    measurements, median_rows, ratio_rows = [], [], []
    summary = {"threads": threads, "ratios": {key: {} for key, *_ in RATIOS}, "open_ms": {}}
    for case in todo:
        medians = {}
        for side in SIDES:
            rounds = times[side, case]
            flat = [t for one in rounds for t in one]
            medians[side] = statistics.median(flat)
            measurements.append(Measurement(scenario, case.signature, names[side], "this machine",
                                            1 if side in (BROWSER_1, NATIVE_1) else threads, "XNNPACK",
                                            case.batch, len(flat), medians[side], min(flat), max(flat), None,
                                            {"round_medians_us": [statistics.median(one) for one in rounds]}))
        key = f"{case.signature} batch {case.batch}"
        ratios = {name: _ratio(times, case, slower, faster) for name, _, slower, faster in RATIOS}
        for name, ratio in ratios.items():
            summary["ratios"][name][key] = ratio
        median_rows.append(f"| `{case.signature}` | {case.batch} | " +
                           " | ".join(format_duration(medians[side]) for side in SIDES) + " |")
        ratio_rows.append(f"| `{case.signature}` | {case.batch} | " + " | ".join(_cell(ratios[name]) for name, *_ in RATIOS) + " |")
    summary["open_ms"] = {f"{name} ({PAGE[side]} page)": answer["openMs"] for (side, name), answer in opened.items()}
    section = "\n".join([
        f"## Medians: browser (wasm) and native, 1 thread and {threads} threads",
        "",
        "| signature | batch | " + " | ".join(names[side] for side in SIDES) + " |",
        "|---|---:|" + "---|" * len(SIDES),
        *median_rows,
        "",
        "## Ratios: median of the per-round ratios (min–max over rounds)",
        "",
        "| signature | batch | " + " | ".join(title.replace("N threads", f"{threads} threads") for _, title, *_ in RATIOS) + " |",
        "|---|---:|" + "---|" * len(RATIOS),
        *ratio_rows,
        "",
        "Opening a model in the page (digest check, metadata, LiteRT.js compile): " +
        ", ".join(f"{name} {ms:.0f} ms" for name, ms in summary["open_ms"].items()) + ".",
    ])
    notes = [f"{settings.rounds} rounds x {settings.runs} timed calls (after {settings.warmup} untimed) per figure; "
             "in each round every case runs on the four runtimes back to back, in an order rotated round by round.",
             "Browser: only `compiled.run` and reading its outputs are timed (inputs pre-built), in two pages of one "
             "headless Chromium served cross-origin isolated (COOP/COEP, as runtime/web/serve.py serves the demo; a "
             "5 us clock): one loads LiteRT.js's single-threaded wasm, the other its multi-threaded wasm compiled with "
             f"numThreads {threads} (navigator.hardwareConcurrency). A sample repeats calls shorter than 2 ms and "
             "reports the time per call.",
             f"Native: ai-edge-litert signature runner, num_threads=1 and {threads}, XNNPACK (the default delegate).",
             f"Physical limit: this machine has {os.cpu_count()} cores, so threads can at best divide a latency by "
             f"{os.cpu_count()} (a speed-up of at most {os.cpu_count()}x), and only while no other process wants a "
             "core; the load average in the table above says how busy the machine was. On a machine busier than "
             "its core count, a process with 2 threads also gets a larger share of the CPU than one with 1 thread, "
             "so a threads ratio beyond the core count measures that share, not parallel speed-up."]
    return write_report(results_dir, "web-benchmark", measurements, machine_facts(), notes, summary, [section])
