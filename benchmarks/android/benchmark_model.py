"""TFLite's own `benchmark_model` on the device, where a phone has it (the runner's --tool option).

Parses its log (tensorflow/lite/tools/benchmark/benchmark_model.cc and tsl stats_calculator.h;
real-format replays in tests/benchmarks/data/) into report Measurements. Every signature of a
compiled model takes tensors, which benchmark_model fills with random values: `train` steps on
random bottlenecks and labels, which costs the same as real ones.
"""

from __future__ import annotations

import dataclasses
import re

from tflite_transfer.runtime.errors import TransferError

from benchmarks.android.adb import Device
from benchmarks.android.device import DeviceFacts
from benchmarks.common.report import Measurement

RUNTIME = "tflite benchmark_model"
RUN_TIMEOUT_S = 900  # benchmark_model stops itself after --max_secs (150 s) plus init.

# The output format of benchmark_model (tensorflow/lite/tools/benchmark/benchmark_model.cc and
# tsl stats_calculator.h; see tests/benchmarks/data/README.md). Numbers may be printed by an
# ostream with 6 significant digits, i.e. as "2.95034e+06", or as "nan" when a stage ran 0 times.
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUMBER}), First inference: (?P<first>{_NUMBER}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUMBER}), Inference \(avg\): (?P<avg>{_NUMBER})"
)
_RUN_STATS = re.compile(
    rf"count=(?P<count>\d+)(?: first=(?P<first>{_NUMBER}))? curr=(?P<curr>{_NUMBER})(?:\(all same\))?"
    rf"(?: min=(?P<min>{_NUMBER}) max=(?P<max>{_NUMBER}) avg=(?P<avg>{_NUMBER}) std=(?P<std>{_NUMBER}))?"
    rf"(?: p5=(?P<p5>{_NUMBER}) median=(?P<median>{_NUMBER}) p95=(?P<p95>{_NUMBER}))?"
)
_PEAK_MEMORY = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{_NUMBER})")
# Newer name first; "Peak memory footprint (MB): init= overall=" is the same delta in old binaries.
_MEMORY_DELTA = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=(?P<init>{_NUMBER}) overall=(?P<overall>{_NUMBER})"
)
_ERROR_LINE = re.compile(r"^(?:ERROR|FATAL): ?(?P<message>.*\S)")
_GENERIC_ERRORS = {"Benchmarking failed."}


@dataclasses.dataclass(frozen=True)
class BenchmarkTimings:
    """The figures of one successful benchmark_model run, in microseconds and MiB."""

    runs: int | None
    inference_avg_us: float
    min_us: float | None
    max_us: float | None
    std_us: float | None
    median_us: float | None  # only printed by binaries whose run stats carry percentiles
    init_us: float
    first_inference_us: float
    warmup_avg_us: float
    peak_memory_mib: float | None
    init_memory_delta_mib: float | None
    overall_memory_delta_mib: float | None


def parse_benchmark_output(output: str) -> BenchmarkTimings | None:
    """Read benchmark_model's log; None when it has no timing line (the run failed)."""
    timings = _TIMINGS.search(output)
    if timings is None:
        return None
    # The timed runs' stats are the last count= line before the timing line (the first is the
    # warm-up). The tool's "MB" are KiB / 1024, i.e. MiB.
    run_stats = None
    for run_stats in _RUN_STATS.finditer(output, 0, timings.start()):
        pass
    peak = _PEAK_MEMORY.search(output)
    delta = _MEMORY_DELTA.search(output)

    def stat(name: str) -> float | None:
        value = run_stats.group(name) if run_stats else None
        return None if value is None else float(value)

    all_same = run_stats is not None and run_stats.group("min") is None
    return BenchmarkTimings(
        runs=int(run_stats.group("count")) if run_stats else None,
        inference_avg_us=float(timings.group("avg")),
        min_us=stat("curr") if all_same else stat("min"),
        max_us=stat("curr") if all_same else stat("max"),
        std_us=0.0 if all_same else stat("std"),
        median_us=stat("curr") if all_same else stat("median"),
        init_us=float(timings.group("init")),
        first_inference_us=float(timings.group("first")),
        warmup_avg_us=float(timings.group("warmup")),
        peak_memory_mib=float(peak.group("peak")) if peak else None,
        init_memory_delta_mib=float(delta.group("init")) if delta else None,
        overall_memory_delta_mib=float(delta.group("overall")) if delta else None,
    )


def describe_failure(output: str, returncode: int) -> str:
    """One line for a failed run: the tool's first error and, if different, its last one."""
    errors = []
    for line in output.splitlines():
        match = _ERROR_LINE.match(line.strip())
        if match and match.group("message") not in _GENERIC_ERRORS:
            errors.append(match.group("message"))
    if not errors:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if not lines:
            return f"exit status {returncode} and no output"
        errors = [lines[-1]]
    text = errors[0] if errors[0] == errors[-1] else f"{errors[0]} ... last error: {errors[-1]}"
    if "Didn't find op" in output:
        text += ("; the benchmark binary is older than the TensorFlow that converted the model, "
                 "use a nightly or self-built benchmark_model")
    elif "not executable" in output or "Exec format error" in output or "CANNOT LINK" in output:
        text += "; the benchmark binary was not built for this phone's ABI"
    return text


def benchmark_command(launcher: tuple[str, ...], remote_model: str, signature: str, threads: int,
                      num_runs: int, xnnpack: bool, peak_memory: bool) -> list[str]:
    """The command run by `adb shell` (flag names from benchmark_tflite_model.cc)."""
    command = [
        *launcher,
        f"--graph={remote_model}",
        f"--signature_to_run_for={signature}",
        f"--num_threads={threads}",
        f"--num_runs={num_runs}",
        f"--use_xnnpack={'true' if xnnpack else 'false'}",
        "--enable_op_profiling=false",
    ]
    if peak_memory:
        command.append("--report_peak_memory_footprint=true")
    return command


def benchmark_one(device: Device, facts: DeviceFacts, command: list[str], scenario: str, signature: str,
                  threads: int, xnnpack: bool, num_runs: int, keep_going: bool) -> Measurement:
    """Run benchmark_model once; a failure raises, or with keep_going becomes a failed row."""
    result = device.shell(command, timeout_s=RUN_TIMEOUT_S)
    output = result.stdout + "\n" + result.stderr
    # Old adb (before the shell protocol) always exits 0, so a missing timing line is a failure too.
    timings = parse_benchmark_output(output)
    common = dict(scenario=scenario, signature=signature, runtime=RUNTIME, device=facts.label,
                  threads=threads, delegate="xnnpack" if xnnpack else "none", batch=None)
    if result.returncode != 0 or timings is None:
        error = describe_failure(output, result.returncode)
        if not keep_going:
            raise TransferError(
                f"device {facts.serial} ({facts.model or facts.os}): benchmark_model failed on signature "
                f"'{signature}' (threads={threads}, xnnpack={str(xnnpack).lower()}): {error}. "
                "Rerun with --keep_going to record failures and continue."
            )
        return Measurement(**common, runs=0, median_us=float("nan"), min_us=None, max_us=None,
                           peak_memory_mib=None, extra={"serial": facts.serial, "error": error})
    extra = {
        "serial": facts.serial,
        "num_runs_requested": num_runs,
        "avg_us": timings.inference_avg_us,
        "std_us": timings.std_us,
        "init_us": timings.init_us,
        "first_inference_us": timings.first_inference_us,
        "warmup_avg_us": timings.warmup_avg_us,
        "init_memory_delta_mib": timings.init_memory_delta_mib,
        "overall_memory_delta_mib": timings.overall_memory_delta_mib,
        "median_is_average": timings.median_us is None,
    }
    return Measurement(
        **common,
        runs=timings.runs if timings.runs is not None else num_runs,
        median_us=timings.median_us if timings.median_us is not None else timings.inference_avg_us,
        min_us=timings.min_us,
        max_us=timings.max_us,
        peak_memory_mib=timings.peak_memory_mib,
        extra={key: value for key, value in extra.items() if value is not None},
    )
