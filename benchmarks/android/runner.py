"""The adb runner: pick devices, check their ABI, stage the program, run it, write the report.

    plan = RunPlan(model=Path("model.tflite"), bundle=ProgramBundle(Path("tflite_transfer_bench")))
    measurements, json_path, markdown_path = run_on_devices(plan)

Every device is checked (attached, authorized, right ABI) before the first one is used, so a
bad second phone fails in seconds, not after minutes of benchmarking. The staging folder on a
device is removed at the end, also after a failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import re
from collections.abc import Callable
from pathlib import Path

from tflite_transfer.runtime.errors import InvalidInputError

from benchmarks.android import bench_program, benchmark_model
from benchmarks.android.adb import Device, select_devices
from benchmarks.android.device import DeviceFacts, check_abi, read_device_facts
from benchmarks.android.staging import ProgramBundle, StagedProgram, stage
from benchmarks.common.report import Measurement, format_duration, machine_facts, write_report

REMOTE_DIR = "/data/local/tmp/tflite_transfer"
TOOLS = ("bench", "benchmark_model")

# Signature names go into an `adb shell` command line, which the device's shell re-parses.
_SIGNATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REMOTE_DIR = re.compile(r"^/data/local/tmp/[A-Za-z0-9_][A-Za-z0-9_./-]*$")


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What to run where. `tool` is our tflite_transfer_bench or TFLite's benchmark_model."""

    model: Path
    bundle: ProgramBundle
    tool: str = "bench"
    serials: tuple[str, ...] = ()  # empty: the one attached device
    threads: tuple[int, ...] = (1,)
    runs: int = 20
    train_batches: tuple[int, ...] = (1, 8, 32)
    # benchmark_model only:
    signatures: tuple[str, ...] = ("load", "infer", "train")
    use_xnnpack: tuple[bool, ...] = (True,)
    keep_going: bool = False
    peak_memory: bool = True
    # Where and how:
    adb: tuple[str, ...] = ("adb",)
    remote_dir: str = REMOTE_DIR
    results_dir: Path = Path("benchmarks/results")
    title: str = ""            # default: "Android benchmark <model stem>"
    notes: tuple[str, ...] = ()  # extra report notes (e.g. "timings are emulated")


def run_on_devices(plan: RunPlan, progress: Callable[[str], None] | None = None
                   ) -> tuple[list[Measurement], Path, Path]:
    """Run the plan on every device, write the report, return (measurements, json, markdown)."""
    say = progress or (lambda line: None)
    validate_plan(plan)
    serials = select_devices(plan.adb, plan.serials)
    devices = [Device(plan.adb, serial) for serial in serials]
    facts = [read_device_facts(device) for device in devices]
    for device_facts in facts:
        check_abi(plan.bundle.program, device_facts)

    measurements: list[Measurement] = []
    notes = list(plan.notes)
    staged_on: dict[str, StagedProgram] = {}
    for device, device_facts in zip(devices, facts):
        say(f"[{device.serial}] " + ", ".join(part for part in (device_facts.model, device_facts.os,
                                                                 device_facts.abi) if part))
        try:
            staged = stage(device, plan.bundle, plan.model, plan.remote_dir,
                           ("--version",) if plan.tool == "bench" else None)
            staged_on[device.serial] = staged
            if staged.pushed_libraries:
                say(f"[{device.serial}] device lacks TFLite: pushed {len(staged.pushed_libraries)} libraries")
            for row in _run_tool(plan, device, device_facts, staged):
                measurements.append(row)
                outcome = row.extra["error"] if row.failed else format_duration(row.median_us)
                batch = f" batch={row.batch}" if row.batch is not None else ""
                say(f"[{device.serial}] {row.signature}{batch} threads={row.threads}: {outcome}")
        finally:
            cleanup = device.shell(["rm", "-rf", plan.remote_dir])
            if cleanup.returncode != 0:  # never let a failed clean-up hide the error that got us here
                notes.append(f"could not remove {plan.remote_dir} on {device.serial}; remove it by hand.")
    notes.extend(_tool_notes(plan))
    title = plan.title or f"Android benchmark {plan.model.stem}"
    json_path, markdown_path = write_report(plan.results_dir, title, measurements,
                                            _machine_facts(plan, facts, staged_on), notes)
    return measurements, json_path, markdown_path


def _run_tool(plan: RunPlan, device: Device, facts: DeviceFacts, staged: StagedProgram) -> list[Measurement]:
    rows = []
    for threads in plan.threads:
        if plan.tool == "bench":
            document = bench_program.run_bench(device, facts, staged, plan.remote_dir, plan.runs, threads,
                                               plan.train_batches)
            rows.extend(bench_program.measurements_from(document, facts, plan.model.name))
            continue
        for signature in plan.signatures:
            for xnnpack in plan.use_xnnpack:
                command = benchmark_model.benchmark_command(staged.launcher, staged.remote_model, signature,
                                                            threads, plan.runs, xnnpack, plan.peak_memory)
                rows.append(benchmark_model.benchmark_one(device, facts, command, plan.model.name, signature,
                                                          threads, xnnpack, plan.runs, plan.keep_going))
    return rows


def validate_plan(plan: RunPlan) -> None:
    """Reject unusable inputs before touching adb or a device."""
    for what, path in (("--model", plan.model), ("--program", plan.bundle.program),
                       *(("--library", library) for library in plan.bundle.libraries)):
        if not Path(path).is_file():
            raise InvalidInputError(f"{what} {path}: no such file.")
    if plan.tool not in TOOLS:
        raise InvalidInputError(f"--tool {plan.tool!r}: use one of {', '.join(TOOLS)}.")
    for signature in plan.signatures:
        if not _SIGNATURE_NAME.match(signature):
            raise InvalidInputError(f"signature {signature!r} is not a valid signature name (letters, digits, _).")
    if plan.tool == "benchmark_model" and not plan.signatures:
        raise InvalidInputError("no --signatures given; e.g. --signatures infer,train.")
    if not plan.threads or any(threads < 1 for threads in plan.threads):
        raise InvalidInputError(f"--threads {list(plan.threads)}: give one or more counts >= 1.")
    if plan.runs < 1:
        raise InvalidInputError(f"--runs {plan.runs}: must be >= 1.")
    if not plan.train_batches or any(batch < 1 for batch in plan.train_batches):
        raise InvalidInputError(f"--train_batches {list(plan.train_batches)}: give sizes >= 1.")
    if not plan.use_xnnpack:
        raise InvalidInputError("no XNNPACK setting to run; use --use_xnnpack true, false or both.")
    # The directory is removed with `rm -rf` at the end: keep it inside the scratch area.
    if not _REMOTE_DIR.match(plan.remote_dir) or ".." in plan.remote_dir.split("/"):
        raise InvalidInputError(f"remote dir {plan.remote_dir!r} must be a folder under /data/local/tmp/.")


def _tool_notes(plan: RunPlan) -> list[str]:
    if plan.tool == "bench":
        return [f"tflite_transfer_bench: 1 warm-up + {plan.runs} timed calls per signature and batch on "
                "random inputs; load/infer/train_images at batch 1, train at batches "
                f"{','.join(map(str, plan.train_batches))} on random bottlenecks; save/restore through a "
                "checkpoint file on the device. Peak memory is the process's VmHWM after every signature ran.",
                "delegate 'default': the TFLite library's own default (XNNPACK where it is built in)."]
    return [f"benchmark_model flags: --num_runs={plan.runs} --enable_op_profiling=false"
            + (" --report_peak_memory_footprint=true" if plan.peak_memory else "") + "; inputs are random.",
            "median is benchmark_model's average where the binary prints no percentiles "
            "(extra.median_is_average)."]


def _machine_facts(plan: RunPlan, facts: list[DeviceFacts], staged_on: dict[str, StagedProgram]) -> dict[str, str]:
    machine = {
        "host": platform.node(),
        **{f"host {name}": value for name, value in machine_facts(packages=()).items()},
        "model": f"{plan.model.name} (sha256 {_sha256(plan.model)[:12]})",
        "program": f"{plan.bundle.program.name} (sha256 {_sha256(plan.bundle.program)[:12]})",
    }
    for device in facts:
        described = ", ".join(part for part in (device.model, device.os, f"ABI {device.abi}",
                                                 f"kernel {device.kernel}" if device.kernel else "") if part)
        machine[f"device {device.serial}"] = described
        staged = staged_on.get(device.serial)
        if staged is not None:
            machine[f"device {device.serial} TFLite"] = (
                f"{staged.version_line or 'unknown'}; "
                + (f"pushed with the program: {', '.join(staged.pushed_libraries)}" if staged.pushed_libraries
                   else "the device's own library"))
    return machine


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
