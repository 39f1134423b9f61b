"""The adb runner's parsing edge cases that a real adb daemon cannot produce here.

The real protocol is tested end to end in test_android_adbd.py (Debian's adbd). What a Linux
adbd cannot show is what phones say: getprop answers, unauthorized or offline states, several
devices at once, and TFLite's benchmark_model (no binary for this machine; its logs are
replayed from real-format fixtures in tests/benchmarks/data/, see the README there). For those
a small Python `adb` on PATH logs every call as a JSON line and answers like a phone.
"""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.android.adb import parse_devices, select_devices
from benchmarks.android.bench_program import describe_exit, measurements_from, parse_bench_json
from benchmarks.android.benchmark_model import parse_benchmark_output
from benchmarks.android.device import check_abi, parse_device_facts, program_abi
from benchmarks.android.runner import REMOTE_DIR, RunPlan, run_on_devices
from benchmarks.android.staging import ProgramBundle
from benchmarks.common.report import Measurement, format_duration, read_report, write_report
from tflite_transfer.runtime.errors import InvalidInputError, TransferError

DATA = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).parents[2]
REMOTE = REMOTE_DIR

FAKE_ADB = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    # Fake adb: logs argv, answers devices/push/shell like the phones configured in the env.
    import json, os, shlex, sys

    args = sys.argv[1:]
    with open(os.environ["FAKE_ADB_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    devices = json.loads(os.environ.get("FAKE_ADB_DEVICES", "{}"))
    replay = json.loads(os.environ.get("FAKE_ADB_REPLAY", "{}"))
    if args == ["devices"]:
        print("* daemon not running; starting now at tcp:5037")
        print("List of devices attached")
        for serial, device in devices.items():
            print(f"{serial}\\t{device.get('state', 'device')}")
        sys.exit(0)
    serial, command = args[1], args[2:]
    if command[0] == "push":
        if not os.path.isfile(command[1]):
            print(f"adb: error: cannot stat '{command[1]}': No such file or directory", file=sys.stderr)
            sys.exit(1)
        print(f"{command[1]}: 1 file pushed, 0 skipped. 41.2 MB/s (2341220 bytes in 0.054s)")
        sys.exit(0)
    line = command[1]
    if "getprop" in line:  # the device-facts script
        for name, value in devices[serial]["props"].items():
            print(f"{name}={value}")
        print("uname.m=aarch64")
        print("uname.r=5.10.198-android13-4")
        print("os=")
        sys.exit(0)
    words = shlex.split(line)
    if words[0] in ("mkdir", "chmod"):
        sys.exit(0)
    if words[0] == "rm":
        sys.exit(1 if os.environ.get("FAKE_ADB_RM_FAILS") else 0)
    if words[0].endswith("benchmark_model"):
        flags = dict(a[2:].split("=", 1) for a in words[1:])
        key = flags["signature_to_run_for"] + ("" if flags["use_xnnpack"] == "true" else ":builtin")
        fixture = replay.get(key, replay.get(flags["signature_to_run_for"], replay.get("*")))
        text = open(os.path.join(os.environ["FAKE_ADB_DATA"], fixture)).read()
        for text_line in text.splitlines():
            stream = sys.stderr if text_line.startswith(("ERROR:", "FATAL:")) else sys.stdout
            print(text_line, file=stream)
        failed = "Benchmarking failed." in text
        sys.exit(1 if failed and not os.environ.get("FAKE_ADB_OLD_EXIT_CODES") else 0)
    print(f"fake adb: unexpected command {args}", file=sys.stderr)
    sys.exit(2)
    """
)

PIXEL = {"props": {"ro.product.manufacturer": "Google", "ro.product.model": "Pixel 7",
                   "ro.build.version.release": "14", "ro.build.version.sdk": "34",
                   "ro.product.cpu.abi": "arm64-v8a", "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a"}}
GALAXY = {"props": {"ro.product.manufacturer": "samsung", "ro.product.model": "SM-A546B",
                    "ro.build.version.release": "13", "ro.product.cpu.abi": "arm64-v8a"}}


def elf_header(machine: int) -> bytes:
    """The first 64 bytes of a 64-bit little-endian ELF executable for e_machine `machine`."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    header[18:20] = machine.to_bytes(2, "little")
    return bytes(header)


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """Put the fake adb first on PATH; returns a helper to configure it and read its call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    # The test's own interpreter without site-packages: a pyenv shim on PATH costs ~1 s a call.
    adb.write_text(FAKE_ADB.replace("#!/usr/bin/env python3", f"#!{sys.executable} -S", 1))
    adb.chmod(0o755)
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DATA", str(DATA))

    class FakeAdb:
        def configure(self, devices, replay=None):
            monkeypatch.setenv("FAKE_ADB_DEVICES", json.dumps(devices))
            monkeypatch.setenv("FAKE_ADB_REPLAY", json.dumps(replay or {}))

        def calls(self):
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

    return FakeAdb()


@pytest.fixture
def local_files(tmp_path):
    model = tmp_path / "fused.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(elf_header(183))
    return model, binary


def make_plan(local_files, tmp_path, **overrides):
    model, binary = local_files
    fields = dict(serials=("S1",), model=model, bundle=ProgramBundle(binary), tool="benchmark_model",
                  signatures=("infer", "train"), threads=(1, 2), use_xnnpack=(True, False), runs=50,
                  results_dir=tmp_path / "results")
    fields.update(overrides)
    return RunPlan(**fields)


# ---- parsing every fixture -----------------------------------------------------------------

def test_parse_modern_xnnpack_log():
    timings = parse_benchmark_output((DATA / "infer_xnnpack_ok.log").read_text())
    assert timings.runs == 274  # the timed count= line, not the warm-up's count=135
    assert (timings.min_us, timings.max_us, timings.std_us) == (3601, 3899, 51)
    assert timings.inference_avg_us == 3658.21
    assert timings.median_us is None  # no percentiles in this binary's output
    assert (timings.init_us, timings.first_inference_us, timings.warmup_avg_us) == (34010, 4456, 3721.3)
    assert timings.peak_memory_mib == 17.0781
    assert (timings.init_memory_delta_mib, timings.overall_memory_delta_mib) == (12.0352, 15.2266)


def test_parse_log_with_percentiles():
    timings = parse_benchmark_output((DATA / "train_builtin_ok.log").read_text())
    assert timings.runs == 50
    assert (timings.min_us, timings.median_us, timings.max_us) == (40398, 41187, 44872)
    assert timings.inference_avg_us == 41344.6
    assert timings.peak_memory_mib == 30.1133
    assert timings.overall_memory_delta_mib == 27.8867


def test_parse_legacy_log_without_prefix():
    timings = parse_benchmark_output((DATA / "load_legacy_ok.log").read_text())
    assert timings.runs == 6236
    assert (timings.min_us, timings.max_us, timings.inference_avg_us) == (148, 1261, 160.3)
    assert timings.init_us == 21118
    # The old "Peak memory footprint (MB): init= overall=" line is the memory delta, not the
    # periodic peak, which this binary does not measure.
    assert timings.peak_memory_mib is None
    assert (timings.init_memory_delta_mib, timings.overall_memory_delta_mib) == (9.76953, 10.2109)


@pytest.mark.parametrize("fixture", ["train_failed_invoke.log", "infer_missing_op.log"])
def test_failed_logs_have_no_timings(fixture):
    assert parse_benchmark_output((DATA / fixture).read_text()) is None


def test_parse_scientific_notation_and_all_same():
    # Lines from a real log (yocto, mobilenet_v1 on qemu): runs over 1 s print as 2.95034e+06.
    real = ("count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798\n\n"
            "Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, "
            "Inference (avg): 2.95034e+06\n")
    timings = parse_benchmark_output(real)
    assert timings.inference_avg_us == 2950340.0 and timings.max_us == 3189954
    same = ("INFO: count=50 curr=812(all same)\n"
            "INFO: Inference timings in us: Init: 900, First inference: 812, Warmup (avg): 812, "
            "Inference (avg): 812\n")
    timings = parse_benchmark_output(same)
    assert (timings.runs, timings.min_us, timings.median_us, timings.max_us) == (50, 812, 812, 812)


# ---- which device: states only a phone (or several) can be in ------------------------------

@pytest.mark.parametrize(
    "devices, serials, expected",
    [
        ({}, (), r"^no device attached: plug in a phone with USB debugging on, or `adb connect"),
        ({"S1": PIXEL, "S2": GALAXY}, (), r"^2 devices attached \(S1, S2\); choose one with --serial"),
        ({"S1": {**PIXEL, "state": "unauthorized"}}, (), r"device S1: unauthorized; accept the 'Allow USB"),
        ({"S1": {**PIXEL, "state": "offline"}}, ("S1",), r"device S1: adb says 'offline'; replug it"),
        ({"S1": PIXEL}, ("S9",), r"device S9: not attached \(adb lists: S1\)"),
    ],
)
def test_unusable_device_choice_is_one_clear_error(fake_adb, devices, serials, expected):
    fake_adb.configure(devices)
    with pytest.raises(TransferError, match=expected) as raised:
        select_devices(("adb",), serials)
    assert "\n" not in str(raised.value)


def test_the_only_device_is_chosen_and_the_banner_skipped(fake_adb):
    fake_adb.configure({"S1": PIXEL})
    assert select_devices(("adb",), ()) == ["S1"]
    assert parse_devices("List of devices attached\n* daemon started successfully\n\n") == []


def test_second_phone_unauthorized_fails_before_first_is_used(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL, "S2": {**GALAXY, "state": "unauthorized"}})
    with pytest.raises(TransferError, match="device S2: unauthorized"):
        run_on_devices(make_plan(local_files, tmp_path, serials=("S1", "S2")))
    assert fake_adb.calls() == [["devices"]]


# ---- what a phone says about itself ----------------------------------------------------------

def test_android_facts_come_from_getprop():
    said = "\n".join(f"{key}={value}" for key, value in PIXEL["props"].items())
    facts = parse_device_facts("S1", said + "\nuname.m=aarch64\nuname.r=5.10.198\nos=\n")
    assert (facts.abi, facts.abis) == ("arm64-v8a", ("arm64-v8a", "armeabi-v7a"))
    assert (facts.model, facts.os, facts.kernel) == ("Google Pixel 7", "Android 14 (SDK 34)", "5.10.198")
    assert facts.label == "Google Pixel 7 (S1)" and facts.is_android


def test_linux_facts_come_from_uname_and_os_release():
    said = "ro.product.cpu.abi=\nro.product.model=\nuname.m=armv7l\nuname.r=6.6.51\nos=Raspbian GNU/Linux 12\n"
    facts = parse_device_facts("pi", said)
    assert (facts.abi, facts.abis, facts.model, facts.os) == ("armeabi-v7a", ("armeabi-v7a",), "",
                                                              "Raspbian GNU/Linux 12")
    with pytest.raises(TransferError, match="reports neither ro.product.cpu.abi nor `uname -m`"):
        parse_device_facts("x", "os=\n")


def test_abi_check_uses_the_elf_header_and_the_abilist(tmp_path):
    program = tmp_path / "bench"
    program.write_bytes(elf_header(40))  # 32-bit ARM runs on a phone that lists armeabi-v7a
    pixel = parse_device_facts("S1", "\n".join(f"{k}={v}" for k, v in PIXEL["props"].items()))
    assert program_abi(program) == "armeabi-v7a"
    check_abi(program, pixel)
    program.write_bytes(elf_header(62))
    with pytest.raises(InvalidInputError, match=r"built for x86_64 but device S1 runs arm64-v8a, "
                                                r"armeabi-v7a; build it for arm64-v8a"):
        check_abi(program, pixel)
    program.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(InvalidInputError, match="not an ELF executable"):
        program_abi(program)


# ---- our program's exit status and JSON ------------------------------------------------------

def test_exit_status_names_the_signal():
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(139) == "was killed by SIGSEGV (exit status 139)"
    assert describe_exit(134) == "was killed by SIGABRT (exit status 134)"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "wrote no valid JSON"),
        ("Segmentation fault", "wrote no valid JSON"),
        ('{"program": "other"}', "not from tflite_transfer_bench"),
        ('{"program": "tflite_transfer_bench", "format_version": 2}', "format version 2, this runner reads 1"),
    ],
)
def test_bench_json_other_than_ours_is_refused(text, expected):
    with pytest.raises(InvalidInputError, match=expected):
        parse_bench_json(text, "S1")


def test_a_skipped_signature_is_a_row_with_its_reason():
    document = {"tflite_version": "2.14.1", "num_threads": 1, "open_us": 10.0,
                "process": {"peak_rss_kib": 2048, "threads": 1},
                "timings": [{"signature": "train", "batch": 32, "skipped": "train takes a fixed batch of 16"},
                            {"signature": "infer", "batch": 1, "runs": 2, "median_us": 5.0, "min_us": 4.0,
                             "max_us": 6.0, "mean_us": 5.0, "run_us": [4.0, 6.0]}]}
    facts = parse_device_facts("S1", "uname.m=x86_64\n")
    skipped, infer = measurements_from(document, facts, "m.tflite")
    assert skipped.failed and skipped.extra["error"] == "skipped: train takes a fixed batch of 16"
    assert (infer.median_us, infer.peak_memory_mib, infer.runtime) == (5.0, 2.0,
                                                                       "tflite_transfer_bench (TFLite 2.14.1)")


# ---- TFLite's benchmark_model on a phone (--tool benchmark_model) ----------------------------

def test_benchmark_model_rows_and_report(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_builtin_ok.log"})
    measurements, json_path, markdown_path = run_on_devices(make_plan(local_files, tmp_path))
    assert len(measurements) == 2 * 2 * 2
    report = read_report(json_path)
    assert report.measurements == measurements
    assert report.machine["device S1"] == "Google Pixel 7, Android 14 (SDK 34), ABI arm64-v8a, kernel 5.10.198-android13-4"
    assert json.loads(json_path.read_text())["measurements"][0]["median_us"] == 3658.21
    markdown = markdown_path.read_text()
    assert ("| fused.tflite | infer | tflite benchmark_model | Google Pixel 7 (S1) | 1 | xnnpack | — "
            "| 3.66 ms (3.60–3.90 ms) | 274 | 17.1 MiB |") in markdown
    assert ["-s", "S1", "shell", f"{REMOTE}/android_aarch64_benchmark_model --graph={REMOTE}/fused.tflite "
            "--signature_to_run_for=train --num_threads=2 --num_runs=50 --use_xnnpack=false "
            "--enable_op_profiling=false --report_peak_memory_footprint=true"] in fake_adb.calls()
    assert fake_adb.calls()[-1] == ["-s", "S1", "shell", f"rm -rf {REMOTE}"]


def test_failed_invoke_names_device_signature_and_error_line(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_failed_invoke.log"})
    with pytest.raises(TransferError) as caught:
        run_on_devices(make_plan(local_files, tmp_path, threads=(1,), use_xnnpack=(True,)))
    message = str(caught.value)
    assert "device S1 (Google Pixel 7)" in message and "signature 'train'" in message
    assert "Node number 41 (GATHER) failed to invoke." in message and "\n" not in message
    assert fake_adb.calls()[-1] == ["-s", "S1", "shell", f"rm -rf {REMOTE}"]  # cleaned up anyway
    assert not (tmp_path / "results").exists()


def test_missing_op_error_says_what_to_do(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_missing_op.log"})
    with pytest.raises(TransferError) as caught:
        run_on_devices(make_plan(local_files, tmp_path, signatures=("infer",), threads=(1,)))
    message = str(caught.value)
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'" in message
    assert "last error: Failed to initialize the interpreter" in message
    assert "benchmark binary is older" in message


def test_failure_detected_even_when_old_adb_exits_zero(fake_adb, local_files, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_OLD_EXIT_CODES", "1")
    fake_adb.configure({"S1": PIXEL}, {"*": "train_failed_invoke.log"})
    with pytest.raises(TransferError, match="failed to invoke"):
        run_on_devices(make_plan(local_files, tmp_path, signatures=("train",), threads=(1,)))


def test_failed_cleanup_is_a_note(fake_adb, local_files, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_RM_FAILS", "1")
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log"})
    _, json_path, _ = run_on_devices(make_plan(local_files, tmp_path, signatures=("infer",)))
    assert f"could not remove {REMOTE} on S1; remove it by hand." in read_report(json_path).notes


def test_keep_going_records_failed_rows(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_failed_invoke.log",
                                       "train:builtin": "train_builtin_ok.log"})
    measurements, json_path, markdown_path = run_on_devices(
        make_plan(local_files, tmp_path, threads=(1,), keep_going=True))
    outcome = {(m.signature, m.delegate): m for m in measurements}
    failed = outcome[("train", "xnnpack")]
    assert failed.failed and math.isnan(failed.median_us) and failed.runs == 0
    assert outcome[("train", "none")].median_us == 41187
    assert math.isnan(read_report(json_path).measurements[2].median_us)
    assert "gather index out of bounds" in markdown_path.read_text()


# ---- the report ------------------------------------------------------------------------------

def test_report_round_trip_without_adb(tmp_path):
    rows = [
        Measurement("host", "infer", "litert", "x86_64", 4, "xnnpack", 32, 100, 812.0, 790.0, 901.5, None, {}),
        Measurement("host", "train", "litert", "x86_64", 4, "none", None, 10, 2.5e6, None, None, 250.25,
                    {"note": "one epoch"}),
    ]
    json_path, markdown_path = write_report(tmp_path, "Host | run", rows, {"cpu": "test"}, ["a note"])
    assert read_report(json_path).measurements == rows
    markdown = markdown_path.read_text()
    assert "# Host | run" in markdown and "| 812 µs (790–902 µs) |" in markdown
    assert "| 2.500 s |" in markdown and "| 250.2 MiB |" in markdown and "- a note" in markdown


def test_read_report_rejects_other_schema_versions(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema_version": 0, "measurements": []}))
    with pytest.raises(InvalidInputError, match="schema version 0"):
        read_report(path)


def test_format_duration_units():
    assert format_duration(999.4) == "999 µs"
    assert format_duration(3658.21, 3601, 3899) == "3.66 ms (3.60–3.90 ms)"
    assert format_duration(float("nan")) == "—"


# ---- bad inputs are caught before adb is called ---------------------------------------------

@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"model": Path("/nonexistent/m.tflite")}, "--model /nonexistent/m.tflite: no such file"),
        ({"bundle": ProgramBundle(Path("/nonexistent/bench"))}, "--program /nonexistent/bench: no such file"),
        ({"signatures": ("infer; reboot",)}, "not a valid signature name"),
        ({"threads": (0,)}, "--threads"),
        ({"runs": 0}, "--runs"),
        ({"train_batches": ()}, "--train_batches"),
        ({"remote_dir": "/sdcard/../"}, "under /data/local/tmp/"),
    ],
)
def test_bad_plan_fails_before_any_adb_call(fake_adb, local_files, tmp_path, overrides, expected):
    fake_adb.configure({"S1": PIXEL}, {"*": "infer_xnnpack_ok.log"})
    with pytest.raises(InvalidInputError, match=expected):
        run_on_devices(make_plan(local_files, tmp_path, **overrides))
    assert fake_adb.calls() == []


# ---- the command line ------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks.android", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=os.environ.copy())


def test_cli_help_reads_like_a_man_page():
    result = run_cli("--help")  # absl prints the module docstring, then the flags
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "EXIT STATUS", "--emulate", "--bundle_root"):
        assert section in result.stdout


def test_cli_runs_benchmark_model_and_writes_report(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"*": "infer_xnnpack_ok.log"})
    model, binary = local_files
    result = run_cli("--model", str(model), "--tool", "benchmark_model", "--program", str(binary),
                     "--signatures", "infer", "--threads", "1,2", "--runs", "20",
                     "--results_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "[S1] infer threads=2: 3.66 ms" in result.stderr  # progress
    (json_path,) = (tmp_path / "out").glob("*.json")
    assert len(read_report(json_path).measurements) == 2


def test_cli_failure_is_one_line_without_traceback(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL, "S2": GALAXY})
    model, binary = local_files
    result = run_cli("--model", str(model), "--program", str(binary), "--results_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: 2 devices attached (S1, S2); choose one with --serial")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_importing_the_package_defines_no_global_flags():
    from absl import flags

    import benchmarks.android.__main__ as cli

    assert "emulate" not in flags.FLAGS
    assert callable(cli.run)


def test_emulate_refuses_unknown_architectures_before_building_anything(tmp_path):
    from benchmarks.android.emulate import run_emulated

    with pytest.raises(InvalidInputError, match="--emulate=riscv64: emulated architectures are arm64"):
        run_emulated("riscv64", tmp_path / "m.tflite", 1, (1,), (1,), tmp_path)
