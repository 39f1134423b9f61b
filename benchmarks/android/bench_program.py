"""Run our on-device benchmark (runtime/cpp/src/bench_main.cc) through adb and read its JSON.

The program writes one JSON document to a file on the device (stdout redirected there); the
runner pulls the file and turns every timing into a report Measurement. A crash (non-zero exit
or a signal) is one TransferError with the exit status and the program's last lines.
"""

from __future__ import annotations

import json
import shlex
import signal
import tempfile
from pathlib import Path

from tflite_transfer.runtime.errors import InvalidInputError, TransferError

from benchmarks.android.adb import Device
from benchmarks.android.device import DeviceFacts
from benchmarks.android.staging import StagedProgram
from benchmarks.common.report import Measurement

PROGRAM = "tflite_transfer_bench"
FORMAT_VERSION = 1  # bench_main.cc's kFormatVersion
RUN_TIMEOUT_S = 3600  # emulated devices are ~10-50x slower than the host
LAST_LINES = 5


def bench_command(staged: StagedProgram, remote_dir: str, runs: int, threads: int,
                  train_batches: tuple[int, ...]) -> list[str]:
    return [*staged.launcher, "--model", staged.remote_model, "--runs", str(runs),
            "--num_threads", str(threads), "--train_batches", ",".join(map(str, train_batches)),
            "--checkpoint", f"{remote_dir}/bench.ckpt"]


def run_bench(device: Device, facts: DeviceFacts, staged: StagedProgram, remote_dir: str,
              runs: int, threads: int, train_batches: tuple[int, ...]) -> dict:
    """Run the program once on the device and return its JSON document (validated)."""
    remote_json = f"{remote_dir}/bench-{threads}.json"
    command = bench_command(staged, remote_dir, runs, threads, train_batches)
    line = " ".join(shlex.quote(word) for word in command) + f" > {shlex.quote(remote_json)}"
    result = device.shell(["sh", "-c", line], timeout_s=RUN_TIMEOUT_S)
    if result.returncode != 0:
        raise TransferError(f"device {facts.serial}: {PROGRAM} {describe_exit(result.returncode)}; "
                            f"last lines: {' | '.join(tail(result.stderr + result.stdout))}")
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "bench.json"
        device.pull(remote_json, str(local))
        return parse_bench_json(local.read_text(encoding="utf-8", errors="replace"), facts.serial)


def describe_exit(returncode: int) -> str:
    """'exited with status 1', or 'was killed by SIGSEGV (exit status 139)' for a signal."""
    if returncode > 128:
        try:
            name = signal.Signals(returncode - 128).name
            return f"was killed by {name} (exit status {returncode})"
        except ValueError:
            pass
    return f"exited with status {returncode}"


def tail(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-LAST_LINES:] or ["(no output)"]


def parse_bench_json(text: str, serial: str) -> dict:
    """The program's document, refused unless it is the format this runner reads."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"device {serial}: {PROGRAM} wrote no valid JSON ({error}); "
                                f"first bytes: {text[:80]!r}.") from None
    if not isinstance(document, dict) or document.get("program") != PROGRAM:
        raise InvalidInputError(f"device {serial}: the JSON is not from {PROGRAM}.")
    if document.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(f"device {serial}: {PROGRAM} JSON format version "
                                f"{document.get('format_version')!r}, this runner reads "
                                f"{FORMAT_VERSION}; rebuild the program from this checkout.")
    return document


def measurements_from(document: dict, facts: DeviceFacts, model_name: str) -> list[Measurement]:
    """One Measurement per signature and batch; a skipped one is a row with its reason."""
    runtime = f"{PROGRAM} (TFLite {document['tflite_version']})"
    process = document["process"]
    peak_mib = process["peak_rss_kib"] / 1024 if process["peak_rss_kib"] >= 0 else None
    rows = []
    for timing in document["timings"]:
        common = dict(scenario=model_name, signature=timing["signature"], runtime=runtime,
                      device=facts.label, threads=document["num_threads"], delegate="default",
                      batch=timing["batch"])
        if "skipped" in timing:
            rows.append(Measurement(**common, runs=0, median_us=float("nan"), min_us=None, max_us=None,
                                    peak_memory_mib=None,
                                    extra={"serial": facts.serial, "error": f"skipped: {timing['skipped']}"}))
            continue
        rows.append(Measurement(
            **common, runs=timing["runs"], median_us=timing["median_us"], min_us=timing["min_us"],
            max_us=timing["max_us"], peak_memory_mib=peak_mib,
            extra={"serial": facts.serial, "mean_us": timing["mean_us"],
                   "open_us": document["open_us"], "process_threads": process["threads"],
                   "peak_memory_is": "process VmHWM after all signatures"}))
    return rows
