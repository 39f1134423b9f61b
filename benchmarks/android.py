"""Benchmark a fused .tflite on Android phones over adb with TFLite's benchmark_model.

NAME
    python -m benchmarks.android - time each signature of a fused model on attached phones

SYNOPSIS
    python -m benchmarks.android --serial SERIAL [--serial SERIAL2 ...] --model FUSED.tflite
        [--benchmark_binary ./android_aarch64_benchmark_model] [--signatures load,infer,train]
        [--threads 1,4] [--num_runs 50] [--use_xnnpack true|false|both] [--keep_going]
        [--results_dir benchmarks/results]

DESCRIPTION
    For every --serial: checks `adb -s SERIAL get-state` says "device", reads the phone's
    model, Android release and CPU ABI (getprop), pushes the benchmark binary and the model
    to /data/local/tmp/tflite_transfer/, then runs

        benchmark_model --graph=... --signature_to_run_for=SIG --num_threads=N
            --num_runs=R --use_xnnpack=true|false --enable_op_profiling=false
            --report_peak_memory_footprint=true

    once per signature x thread count x XNNPACK setting, parses its output and writes
    <results_dir>/android-benchmark-<model>-<UTC time>.json (every figure) and .md (a table).
    The pushed files are removed from the phone at the end, also after a failure.

    Every signature of a fused model takes tensors (see compiler/pipeline.py), which
    benchmark_model fills with random values: `train` steps on random bottlenecks and labels,
    which costs the same as real ones. With XNNPACK off, TFLite's builtin CPU kernels run the
    whole graph. benchmark_model runs for at least 1 s, so "runs" can exceed --num_runs.

EXAMPLES
    adb devices
    python -m benchmarks.android --serial 1A2B3C4D --model fused.tflite \\
        --benchmark_binary ./android_aarch64_benchmark_model --signatures load,infer,train \\
        --threads 1,4 --use_xnnpack both

EXIT STATUS
    0 when every run succeeded (or --keep_going recorded the failures in the report);
    1 with one line on stderr naming the phone, the signature and what to do, otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.report import Measurement, format_duration, write_report
from tflite_transfer.runtime.errors import InvalidInputError, TransferError

REMOTE_DIR = "/data/local/tmp/tflite_transfer"
RUNTIME = "tflite benchmark_model"
ADB_TIMEOUT_S = 300
RUN_TIMEOUT_S = 900  # benchmark_model stops itself after --max_secs (150 s) plus init.

# Signature names go into an `adb shell` command line, which the phone's shell re-parses.
_SIGNATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REMOTE_DIR = re.compile(r"^/data/local/tmp/[A-Za-z0-9_][A-Za-z0-9_./-]*$")

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
class AndroidBenchmarkPlan:
    """What to run: every serial x signature x thread count x XNNPACK setting."""

    serials: tuple[str, ...]
    model: Path
    benchmark_binary: Path
    signatures: tuple[str, ...] = ("load", "infer", "train")
    threads: tuple[int, ...] = (1,)
    use_xnnpack: tuple[bool, ...] = (True,)
    num_runs: int = 50
    results_dir: Path = Path("benchmarks/results")
    keep_going: bool = False
    report_peak_memory: bool = True
    adb: str = "adb"
    remote_dir: str = REMOTE_DIR


@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    serial: str
    model: str
    android_release: str
    cpu_abi: str

    @property
    def label(self) -> str:
        return f"{self.model} ({self.serial})"


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


def benchmark_command(plan: AndroidBenchmarkPlan, signature: str, threads: int, xnnpack: bool) -> list[str]:
    """The command run by `adb shell` (flag names from benchmark_tflite_model.cc)."""
    command = [
        f"{plan.remote_dir}/benchmark_model",
        f"--graph={plan.remote_dir}/model.tflite",
        f"--signature_to_run_for={signature}",
        f"--num_threads={threads}",
        f"--num_runs={plan.num_runs}",
        f"--use_xnnpack={'true' if xnnpack else 'false'}",
        "--enable_op_profiling=false",
    ]
    if plan.report_peak_memory:
        command.append("--report_peak_memory_footprint=true")
    return command


def run_android_benchmarks(
    plan: AndroidBenchmarkPlan, progress: Callable[[str], None] | None = None
) -> tuple[list[Measurement], Path, Path]:
    """Run the plan on every phone, write the report, return (measurements, json, markdown)."""
    say = progress or (lambda line: None)
    validate_plan(plan)
    for serial in plan.serials:  # all phones first: fail before minutes of benchmarking
        check_device_online(plan.adb, serial)
    measurements: list[Measurement] = []
    devices: list[DeviceFacts] = []
    notes = [
        f"benchmark_model flags: --num_runs={plan.num_runs} --enable_op_profiling=false"
        + (" --report_peak_memory_footprint=true" if plan.report_peak_memory else "")
        + "; inputs are random.",
        "median is benchmark_model's average where the binary prints no percentiles "
        "(extra.median_is_average).",
    ]
    for serial in plan.serials:
        device = read_device_facts(plan.adb, serial)
        devices.append(device)
        say(f"[{serial}] {device.model}, Android {device.android_release}, {device.cpu_abi}")
        try:
            _adb(plan.adb, serial, "push", str(plan.benchmark_binary), f"{plan.remote_dir}/benchmark_model")
            _adb(plan.adb, serial, "push", str(plan.model), f"{plan.remote_dir}/model.tflite")
            _adb(plan.adb, serial, "shell", "chmod", "+x", f"{plan.remote_dir}/benchmark_model")
            for signature in plan.signatures:
                for threads in plan.threads:
                    for xnnpack in plan.use_xnnpack:
                        measurement = _benchmark_one(plan, device, signature, threads, xnnpack)
                        measurements.append(measurement)
                        outcome = (f"failed: {measurement.extra['error']}" if measurement.failed
                                   else format_duration(measurement.median_us))
                        say(f"[{serial}] {signature} threads={threads} "
                            f"{measurement.delegate}: {outcome}")
        finally:
            try:  # never let a failed clean-up hide the error that got us here
                _adb(plan.adb, serial, "shell", "rm", "-rf", plan.remote_dir)
            except TransferError:
                notes.append(f"could not remove {plan.remote_dir} on {serial}; remove it by hand.")
    machine = _machine_facts(plan, devices)
    json_path, markdown_path = write_report(
        plan.results_dir, f"Android benchmark {plan.model.stem}", measurements, machine, notes
    )
    return measurements, json_path, markdown_path


def validate_plan(plan: AndroidBenchmarkPlan) -> None:
    """Reject unusable inputs before touching adb or a phone."""
    for what, path in (("--model", plan.model), ("--benchmark_binary", plan.benchmark_binary)):
        if not Path(path).is_file():
            raise InvalidInputError(f"{what} {path}: no such file.")
    if not plan.serials:
        raise InvalidInputError("no --serial given; `adb devices` lists the serials of attached phones.")
    if not plan.signatures:
        raise InvalidInputError("no --signatures given; e.g. --signatures infer,train.")
    for signature in plan.signatures:
        if not _SIGNATURE_NAME.match(signature):
            raise InvalidInputError(f"signature {signature!r} is not a valid signature name (letters, digits, _).")
    if not plan.threads or any(threads < 1 for threads in plan.threads):
        raise InvalidInputError(f"--threads {list(plan.threads)}: give one or more counts >= 1.")
    if plan.num_runs < 1:
        raise InvalidInputError(f"--num_runs {plan.num_runs}: must be >= 1.")
    if not plan.use_xnnpack:
        raise InvalidInputError("no XNNPACK setting to run; use --use_xnnpack true, false or both.")
    # The directory is removed with `rm -rf` at the end: keep it inside the scratch area.
    if not _REMOTE_DIR.match(plan.remote_dir) or ".." in plan.remote_dir.split("/"):
        raise InvalidInputError(f"remote dir {plan.remote_dir!r} must be a folder under /data/local/tmp/.")
    if shutil.which(plan.adb) is None:
        raise TransferError(f"adb executable {plan.adb!r} not found; install Android platform-tools "
                            "and put adb on PATH.")


def check_device_online(adb: str, serial: str) -> None:
    """`adb get-state` must say "device"; otherwise say what is wrong and how to fix it."""
    result = _run([adb, "-s", serial, "get-state"], ADB_TIMEOUT_S)
    said = (result.stdout + result.stderr).strip()
    if result.returncode == 0 and said == "device":
        return
    if "not found" in said:
        raise TransferError(f"phone {serial}: not found by adb; plug it in, enable USB debugging "
                            "and check that `adb devices` lists this serial.")
    if "offline" in said:
        raise TransferError(f"phone {serial}: adb says it is offline; replug the cable, accept the "
                            "'Allow USB debugging' prompt on the phone, or run `adb kill-server`.")
    if "unauthorized" in said:
        raise TransferError(f"phone {serial}: unauthorized; accept the 'Allow USB debugging' prompt "
                            "on the phone, then rerun.")
    last_line = said.splitlines()[-1] if said else f"exit status {result.returncode}"
    raise TransferError(f"phone {serial}: not ready for adb ({last_line}); check `adb devices`.")


def read_device_facts(adb: str, serial: str) -> DeviceFacts:
    def getprop(name: str) -> str:
        return _adb(adb, serial, "shell", "getprop", name).stdout.strip() or "unknown"

    return DeviceFacts(
        serial=serial,
        model=getprop("ro.product.model"),
        android_release=getprop("ro.build.version.release"),
        cpu_abi=getprop("ro.product.cpu.abi"),
    )


def _benchmark_one(plan: AndroidBenchmarkPlan, device: DeviceFacts, signature: str,
                   threads: int, xnnpack: bool) -> Measurement:
    result = _run([plan.adb, "-s", device.serial, "shell", *benchmark_command(plan, signature, threads, xnnpack)],
                  RUN_TIMEOUT_S)
    output = result.stdout + "\n" + result.stderr
    # Old adb (before the shell protocol) always exits 0, so a missing timing line is a failure too.
    timings = parse_benchmark_output(output)
    common = dict(scenario=plan.model.name, signature=signature, runtime=RUNTIME, device=device.label,
                  threads=threads, delegate="xnnpack" if xnnpack else "none", batch=None)
    if result.returncode != 0 or timings is None:
        error = describe_failure(output, result.returncode)
        if not plan.keep_going:
            raise TransferError(
                f"phone {device.serial} ({device.model}): benchmark_model failed on signature "
                f"'{signature}' (threads={threads}, xnnpack={str(xnnpack).lower()}): {error}. "
                "Rerun with --keep_going to record failures and continue."
            )
        return Measurement(**common, runs=0, median_us=float("nan"), min_us=None, max_us=None,
                           peak_memory_mib=None, extra={"serial": device.serial, "error": error})
    extra = {
        "serial": device.serial,
        "num_runs_requested": plan.num_runs,
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
        runs=timings.runs if timings.runs is not None else plan.num_runs,
        median_us=timings.median_us if timings.median_us is not None else timings.inference_avg_us,
        min_us=timings.min_us,
        max_us=timings.max_us,
        peak_memory_mib=timings.peak_memory_mib,
        extra={key: value for key, value in extra.items() if value is not None},
    )


def _adb(adb: str, serial: str, *args: str) -> subprocess.CompletedProcess:
    """Run one adb command that must succeed (push, chmod, getprop)."""
    result = _run([adb, "-s", serial, *args], ADB_TIMEOUT_S)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise TransferError(f"phone {serial}: `adb {' '.join(args)}` failed "
                            f"({said[-1] if said else f'exit status {result.returncode}'}).")
    return result


def _run(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TransferError(f"`{' '.join(argv[:4])} ...` did not finish in {timeout_s:.0f} s; "
                            "check the phone is awake and responsive.") from None
    except FileNotFoundError:
        raise TransferError(f"adb executable {argv[0]!r} not found; put Android platform-tools on PATH.") from None


def _machine_facts(plan: AndroidBenchmarkPlan, devices: list[DeviceFacts]) -> dict[str, str]:
    facts = {
        "host": platform.node(),
        "host platform": platform.platform(),
        "python": platform.python_version(),
        "model": f"{plan.model.name} (sha256 {_sha256(plan.model)[:12]})",
        "benchmark_model": f"{plan.benchmark_binary.name} (sha256 {_sha256(plan.benchmark_binary)[:12]})",
    }
    for device in devices:
        facts[f"phone {device.serial}"] = f"{device.model}, Android {device.android_release}, {device.cpu_abi}"
    return facts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- command line -------------------------------------------------------------------------

def _define_flags() -> None:
    # Defined only when run as a program, so importing this module (tests, the host benchmark)
    # never collides with flags another module defines in absl's global registry.
    from absl import flags

    flags.DEFINE_multi_string("serial", None, "adb serial of a phone, as listed by `adb devices`")
    flags.DEFINE_string("model", None, "The fused .tflite to benchmark.")
    flags.DEFINE_string("benchmark_binary", "./android_aarch64_benchmark_model",
                        "TFLite's benchmark_model built for the phone (arm64: android_aarch64_benchmark_model).")
    flags.DEFINE_list("signatures", ["load", "infer", "train"], "Signatures to time, comma-separated.")
    flags.DEFINE_list("threads", ["1", "4"], "Thread counts (--num_threads), comma-separated.")
    flags.DEFINE_integer("num_runs", 50, "Minimum timed runs per configuration (--num_runs).")
    flags.DEFINE_enum("use_xnnpack", "true", ["true", "false", "both"],
                      "Run with the XNNPACK delegate, with TFLite's builtin kernels, or both.")
    flags.DEFINE_string("results_dir", "benchmarks/results", "Where the .json and .md report go.")
    flags.DEFINE_bool("keep_going", False, "Record a failed run as a failed row and continue.")
    flags.DEFINE_bool("peak_memory", True, "Pass --report_peak_memory_footprint=true (a 50 ms sampling thread).")
    flags.DEFINE_string("adb", "adb", "The adb executable.")
    flags.mark_flags_as_required(["serial", "model"])


def main(argv: list[str]) -> int:
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; see --help.", file=sys.stderr)
        return 1
    try:
        try:
            threads = tuple(int(count) for count in FLAGS.threads)
        except ValueError:
            raise InvalidInputError(f"--threads {','.join(FLAGS.threads)}: give integers, e.g. 1,4.") from None
        plan = AndroidBenchmarkPlan(
            serials=tuple(FLAGS.serial),
            model=Path(FLAGS.model),
            benchmark_binary=Path(FLAGS.benchmark_binary),
            signatures=tuple(FLAGS.signatures),
            threads=threads,
            use_xnnpack={"true": (True,), "false": (False,), "both": (True, False)}[FLAGS.use_xnnpack],
            num_runs=FLAGS.num_runs,
            results_dir=Path(FLAGS.results_dir),
            keep_going=FLAGS.keep_going,
            report_peak_memory=FLAGS.peak_memory,
            adb=FLAGS.adb,
        )
        measurements, json_path, markdown_path = run_android_benchmarks(
            plan, progress=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except TransferError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    failed = sum(m.failed for m in measurements)
    print(f"wrote {json_path} and {markdown_path} ({len(measurements)} rows, {failed} failed)")
    return 0


def run() -> None:
    from absl import app

    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
