"""An emulated arm64 device: the real arm64 ABI end to end, on an x86_64 machine.

`python -m benchmarks.android --emulate=arm64 --model M.tflite` builds (once, cached) a Debian
arm64 root with adbd and Debian's arm64 libtensorflow-lite, run by qemu-user-static through
binfmt_misc; builds tflite_transfer_bench there with the root's own arm64 compiler; serves the
root through adbd in a network namespace; and runs the same runner as for a phone. Every
program on that "device" is an arm64 ELF executed instruction by instruction by qemu, so the
timings are those of emulation, not of any phone: the report says so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tflite_transfer.runtime.errors import InvalidInputError

from benchmarks.android.adbd import AdbdDevice, build_device_root
from benchmarks.android.runner import RunPlan, run_on_devices
from benchmarks.android.staging import ProgramBundle
from benchmarks.common.report import Measurement

ARCHITECTURES = ("arm64",)
EMULATION_NOTE = ("EMULATED DEVICE: an arm64 Debian root run by qemu-user-static on an x86_64 host, "
                  "served by a real adbd. The arm64 program, library and adb protocol are real; the "
                  "timings are those of instruction emulation (typically 10-50x slower than native) "
                  "and are NOT device timings; peak memory is the emulator's process, qemu included. "
                  "Use them to check that everything runs, not to compare speed.")


def run_emulated(arch: str, model: Path, runs: int, threads: tuple[int, ...], train_batches: tuple[int, ...],
                 results_dir: Path, progress: Callable[[str], None] | None = None
                 ) -> tuple[list[Measurement], Path, Path]:
    """Build the emulated device (cached), serve it through adbd, run the runner against it."""
    say = progress or (lambda line: None)
    if arch not in ARCHITECTURES:
        raise InvalidInputError(f"--emulate={arch}: emulated architectures are {', '.join(ARCHITECTURES)}.")
    if not Path(model).is_file():
        raise InvalidInputError(f"--model {model}: no such file.")
    say(f"building the emulated {arch} device (cached after the first run, which takes ~15 min)")
    root, program_in_root = build_device_root(arch, build_program=True)
    bundle = ProgramBundle(program=root / program_in_root.lstrip("/"))
    notes = (EMULATION_NOTE, f"Emulator: {_qemu_version()}; device root {root} (Debian testing arm64 "
             "with adbd and libtensorflow-lite-dev); tflite_transfer_bench built for arm64 against "
             "that root's headers and library (benchmarks/android/device_root.sh arm64 --build).")
    with AdbdDevice(root) as device:
        say(f"adbd from {root} serves {device.serial} in network namespace {device.namespace}")
        plan = RunPlan(model=Path(model), bundle=bundle, serials=(device.serial,), adb=device.adb,
                       threads=threads, runs=runs, train_batches=train_batches, results_dir=results_dir,
                       title=f"Emulated {arch} benchmark {Path(model).stem}", notes=notes)
        return run_on_devices(plan, progress)


def _qemu_version() -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}", "qemu-user-static"],
                            capture_output=True, stdin=subprocess.DEVNULL, text=True)
    return result.stdout.strip() if result.returncode == 0 else "qemu-user-static (version unknown)"
