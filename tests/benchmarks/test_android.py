"""Tests for benchmarks/android.py and benchmarks/report.py against a fake `adb`.

No phone is needed: a small Python `adb` on PATH records every call as a JSON line and replays
real-format benchmark_model logs from tests/benchmarks/data/ (see the README there).
"""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import android
from benchmarks.android import AndroidBenchmarkPlan, parse_benchmark_output, run_android_benchmarks
from benchmarks.report import Measurement, format_duration, read_report, write_report
from tflite_transfer.runtime.errors import InvalidInputError, TransferError

DATA = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).parents[2]
REMOTE = "/data/local/tmp/tflite_transfer"

FAKE_ADB = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    # Fake adb: logs argv, answers get-state/getprop/push/shell from env-configured devices.
    import json, os, sys

    args = sys.argv[1:]
    with open(os.environ["FAKE_ADB_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    devices = json.loads(os.environ.get("FAKE_ADB_DEVICES", "{}"))
    replay = json.loads(os.environ.get("FAKE_ADB_REPLAY", "{}"))
    serial = args[1] if args[:1] == ["-s"] else None
    command = args[2:] if serial else args
    device = devices.get(serial)
    if device is None:
        print(f"error: device '{serial}' not found", file=sys.stderr)
        sys.exit(1)
    state = device.get("state", "device")
    if command == ["get-state"]:
        if state == "offline-error":
            print("error: device offline", file=sys.stderr)
            sys.exit(1)
        print(state)
        sys.exit(0)
    if state != "device":
        print("error: device offline", file=sys.stderr)
        sys.exit(1)
    if command[0] == "push":
        if not os.path.isfile(command[1]):
            print(f"adb: error: cannot stat '{command[1]}': No such file or directory", file=sys.stderr)
            sys.exit(1)
        print(f"{command[1]}: 1 file pushed, 0 skipped. 41.2 MB/s (2341220 bytes in 0.054s)")
        sys.exit(0)
    if command[:2] == ["shell", "getprop"]:
        print(device["props"].get(command[2], ""))
        sys.exit(0)
    if command[:2] == ["shell", "chmod"]:
        sys.exit(0)
    if command[:2] == ["shell", "rm"]:
        sys.exit(1 if os.environ.get("FAKE_ADB_RM_FAILS") else 0)
    if command[0] == "shell" and command[1].endswith("/benchmark_model"):
        flags = dict(a[2:].split("=", 1) for a in command[2:])
        key = flags["signature_to_run_for"] + ("" if flags["use_xnnpack"] == "true" else ":builtin")
        fixture = replay.get(key, replay.get(flags["signature_to_run_for"], replay.get("*")))
        text = open(os.path.join(os.environ["FAKE_ADB_DATA"], fixture)).read()
        for line in text.splitlines():
            stream = sys.stderr if line.startswith(("ERROR:", "FATAL:")) else sys.stdout
            print(line, file=stream)
        failed = "Benchmarking failed." in text
        sys.exit(1 if failed and not os.environ.get("FAKE_ADB_OLD_EXIT_CODES") else 0)
    print(f"fake adb: unexpected command {args}", file=sys.stderr)
    sys.exit(2)
    """
)

PIXEL = {"props": {"ro.product.model": "Pixel 7", "ro.build.version.release": "14",
                   "ro.product.cpu.abi": "arm64-v8a"}}
GALAXY = {"props": {"ro.product.model": "SM-A546B", "ro.build.version.release": "13",
                    "ro.product.cpu.abi": "arm64-v8a"}}


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """Put the fake adb first on PATH; returns a helper to configure it and read its call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB)
    adb.chmod(0o755)
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DATA", str(DATA))

    class FakeAdb:
        def configure(self, devices, replay):
            monkeypatch.setenv("FAKE_ADB_DEVICES", json.dumps(devices))
            monkeypatch.setenv("FAKE_ADB_REPLAY", json.dumps(replay))

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
    binary.write_bytes(b"\x7fELF" + bytes(64))
    return model, binary


def make_plan(local_files, tmp_path, **overrides):
    model, binary = local_files
    fields = dict(serials=("S1",), model=model, benchmark_binary=binary, signatures=("infer", "train"),
                  threads=(1, 2), use_xnnpack=(True, False), num_runs=50, results_dir=tmp_path / "results")
    fields.update(overrides)
    return AndroidBenchmarkPlan(**fields)


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


# ---- the adb conversation ------------------------------------------------------------------

def test_exact_adb_call_sequence_for_one_device(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_builtin_ok.log"})
    model, binary = local_files
    run_android_benchmarks(make_plan(local_files, tmp_path))

    expected = [
        ["-s", "S1", "get-state"],
        ["-s", "S1", "shell", "getprop", "ro.product.model"],
        ["-s", "S1", "shell", "getprop", "ro.build.version.release"],
        ["-s", "S1", "shell", "getprop", "ro.product.cpu.abi"],
        ["-s", "S1", "push", str(binary), f"{REMOTE}/benchmark_model"],
        ["-s", "S1", "push", str(model), f"{REMOTE}/model.tflite"],
        ["-s", "S1", "shell", "chmod", "+x", f"{REMOTE}/benchmark_model"],
    ]
    for signature in ("infer", "train"):
        for threads in (1, 2):
            for xnnpack in ("true", "false"):
                expected.append(["-s", "S1", "shell", f"{REMOTE}/benchmark_model",
                                 f"--graph={REMOTE}/model.tflite", f"--signature_to_run_for={signature}",
                                 f"--num_threads={threads}", "--num_runs=50", f"--use_xnnpack={xnnpack}",
                                 "--enable_op_profiling=false", "--report_peak_memory_footprint=true"])
    expected.append(["-s", "S1", "shell", "rm", "-rf", REMOTE])
    assert fake_adb.calls() == expected


def test_measurements_carry_the_fixture_figures(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_builtin_ok.log"})
    plan = make_plan(local_files, tmp_path, threads=(1,), use_xnnpack=(True,))
    measurements, _, _ = run_android_benchmarks(plan)

    infer, train = measurements
    assert infer == Measurement(
        scenario="fused.tflite", signature="infer", runtime="tflite benchmark_model",
        device="Pixel 7 (S1)", threads=1, delegate="xnnpack", batch=None, runs=274,
        median_us=3658.21, min_us=3601, max_us=3899, peak_memory_mib=17.0781,
        extra={"serial": "S1", "num_runs_requested": 50, "avg_us": 3658.21, "std_us": 51,
               "init_us": 34010, "first_inference_us": 4456, "warmup_avg_us": 3721.3,
               "init_memory_delta_mib": 12.0352, "overall_memory_delta_mib": 15.2266,
               "median_is_average": True},
    )
    assert (train.signature, train.runs, train.median_us, train.min_us, train.max_us) == (
        "train", 50, 41187, 40398, 44872)
    assert train.extra["median_is_average"] is False


def test_two_serials_give_rows_for_both_phones(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL, "S2": GALAXY}, {"*": "infer_xnnpack_ok.log"})
    plan = make_plan(local_files, tmp_path, serials=("S1", "S2"), signatures=("infer",),
                     threads=(4,), use_xnnpack=(True,))
    measurements, json_path, _ = run_android_benchmarks(plan)

    assert [m.device for m in measurements] == ["Pixel 7 (S1)", "SM-A546B (S2)"]
    calls = fake_adb.calls()
    # Both phones are checked before either is used; each is cleaned up.
    assert calls[:2] == [["-s", "S1", "get-state"], ["-s", "S2", "get-state"]]
    assert ["-s", "S1", "shell", "rm", "-rf", REMOTE] in calls
    assert calls[-1] == ["-s", "S2", "shell", "rm", "-rf", REMOTE]
    machine = read_report(json_path).machine
    assert machine["phone S2"] == "SM-A546B, Android 13, arm64-v8a"


@pytest.mark.parametrize(
    "devices, expected",
    [
        ({}, "phone S1: not found by adb"),
        ({"S1": {**PIXEL, "state": "offline"}}, "phone S1: adb says it is offline"),
        ({"S1": {**PIXEL, "state": "offline-error"}}, "phone S1: adb says it is offline"),
    ],
    ids=["missing", "offline-state", "offline-error"],
)
def test_unusable_phone_is_one_clear_error(fake_adb, local_files, tmp_path, devices, expected):
    fake_adb.configure(devices, {"*": "infer_xnnpack_ok.log"})
    with pytest.raises(TransferError, match=expected) as caught:
        run_android_benchmarks(make_plan(local_files, tmp_path))
    assert "\n" not in str(caught.value)
    assert fake_adb.calls() == [["-s", "S1", "get-state"]]  # nothing pushed


def test_second_phone_missing_fails_before_first_is_used(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"*": "infer_xnnpack_ok.log"})
    with pytest.raises(TransferError, match="phone S2: not found"):
        run_android_benchmarks(make_plan(local_files, tmp_path, serials=("S1", "S2")))
    assert fake_adb.calls() == [["-s", "S1", "get-state"], ["-s", "S2", "get-state"]]


def test_failed_invoke_names_phone_signature_and_error_line(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_failed_invoke.log"})
    with pytest.raises(TransferError) as caught:
        run_android_benchmarks(make_plan(local_files, tmp_path, threads=(1,), use_xnnpack=(True,)))
    message = str(caught.value)
    assert "phone S1 (Pixel 7)" in message
    assert "signature 'train'" in message
    assert "gather index out of bounds" in message
    assert "Node number 41 (GATHER) failed to invoke." in message
    assert "\n" not in message
    assert fake_adb.calls()[-1] == ["-s", "S1", "shell", "rm", "-rf", REMOTE]  # cleaned up anyway
    assert not (tmp_path / "results").exists()


def test_missing_op_error_says_what_to_do(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_missing_op.log"})
    with pytest.raises(TransferError) as caught:
        run_android_benchmarks(make_plan(local_files, tmp_path, signatures=("infer",), threads=(1,)))
    message = str(caught.value)
    assert "signature 'infer'" in message
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'" in message
    assert "last error: Failed to initialize the interpreter" in message
    assert "benchmark binary is older" in message


def test_failure_detected_even_when_old_adb_exits_zero(fake_adb, local_files, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_OLD_EXIT_CODES", "1")
    fake_adb.configure({"S1": PIXEL}, {"*": "train_failed_invoke.log"})
    with pytest.raises(TransferError, match="failed to invoke"):
        run_android_benchmarks(make_plan(local_files, tmp_path, signatures=("train",), threads=(1,)))


def test_failed_cleanup_neither_hides_the_error_nor_fails_the_run(fake_adb, local_files, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_RM_FAILS", "1")
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_failed_invoke.log"})
    with pytest.raises(TransferError, match="signature 'train'"):
        run_android_benchmarks(make_plan(local_files, tmp_path, threads=(1,), use_xnnpack=(True,)))
    _, json_path, _ = run_android_benchmarks(make_plan(local_files, tmp_path, signatures=("infer",)))
    assert f"could not remove {REMOTE} on S1; remove it by hand." in read_report(json_path).notes


def test_keep_going_records_failed_rows(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_failed_invoke.log",
                                       "train:builtin": "train_builtin_ok.log"})
    plan = make_plan(local_files, tmp_path, threads=(1,), keep_going=True)
    measurements, json_path, markdown_path = run_android_benchmarks(plan)

    outcome = {(m.signature, m.delegate): m for m in measurements}
    assert len(measurements) == 4
    failed = outcome[("train", "xnnpack")]
    assert failed.failed and math.isnan(failed.median_us) and failed.runs == 0
    assert "Node number 41 (GATHER) failed to invoke." in failed.extra["error"]
    assert not outcome[("train", "none")].failed
    assert outcome[("train", "none")].median_us == 41187

    report = read_report(json_path)
    assert math.isnan(report.measurements[2].median_us) and report.measurements[2].failed
    assert "failed: gather index out of bounds" in markdown_path.read_text()


def test_report_files_written_and_read_back(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL}, {"infer": "infer_xnnpack_ok.log", "train": "train_builtin_ok.log"})
    measurements, json_path, markdown_path = run_android_benchmarks(make_plan(local_files, tmp_path))

    assert json_path.parent == markdown_path.parent == tmp_path / "results"
    assert json_path.name.startswith("android-benchmark-fused-") and json_path.suffix == ".json"
    assert markdown_path.with_suffix(".json") == json_path
    report = read_report(json_path)
    assert report.measurements == measurements
    assert report.schema_version == 1 and report.title == "Android benchmark fused"
    assert report.machine["phone S1"] == "Pixel 7, Android 14, arm64-v8a"
    assert json.loads(json_path.read_text())["measurements"][0]["median_us"] == 3658.21

    markdown = markdown_path.read_text()
    assert "| scenario | signature | runtime | device | threads | delegate | batch |" in markdown
    assert ("| fused.tflite | infer | tflite benchmark_model | Pixel 7 (S1) | 1 | xnnpack | — "
            "| 3.66 ms (3.60–3.90 ms) | 274 | 17.1 MiB |") in markdown
    assert "| 41.19 ms (40.40–44.87 ms) | 50 | 30.1 MiB |" in markdown


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

@pytest.mark.parametrize("missing", ["model", "benchmark_binary"])
def test_missing_local_file_fails_before_any_adb_call(fake_adb, local_files, tmp_path, missing):
    fake_adb.configure({"S1": PIXEL}, {"*": "infer_xnnpack_ok.log"})
    plan = make_plan(local_files, tmp_path, **{missing: tmp_path / "nope"})
    with pytest.raises(InvalidInputError, match=f"--{missing} .*nope: no such file"):
        run_android_benchmarks(plan)
    assert fake_adb.calls() == []


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"signatures": ("infer; reboot",)}, "not a valid signature name"),
        ({"threads": (0,)}, "--threads"),
        ({"num_runs": 0}, "--num_runs"),
        ({"remote_dir": "/sdcard/../"}, "under /data/local/tmp/"),
    ],
)
def test_bad_plan_fails_before_any_adb_call(fake_adb, local_files, tmp_path, overrides, expected):
    fake_adb.configure({"S1": PIXEL}, {"*": "infer_xnnpack_ok.log"})
    with pytest.raises(InvalidInputError, match=expected):
        run_android_benchmarks(make_plan(local_files, tmp_path, **overrides))
    assert fake_adb.calls() == []


# ---- the command line ------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks.android", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=os.environ.copy())


def test_cli_help_reads_like_a_man_page():
    result = run_cli("--help")  # absl prints the module docstring, then the flags (and exits 1)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "EXIT STATUS", "--use_xnnpack"):
        assert section in result.stdout


def test_cli_runs_and_writes_report(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": PIXEL, "S2": GALAXY}, {"*": "infer_xnnpack_ok.log"})
    model, binary = local_files
    result = run_cli("--serial", "S1", "--serial", "S2", "--model", str(model), "--benchmark_binary",
                     str(binary), "--signatures", "infer", "--threads", "1,2", "--use_xnnpack", "both",
                     "--num_runs", "20", "--results_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "[S2] infer threads=2 none: 3.66 ms" in result.stderr  # progress
    (json_path,) = (tmp_path / "out").glob("*.json")
    assert len(read_report(json_path).measurements) == 2 * 2 * 2
    assert ["-s", "S1", "shell", f"{REMOTE}/benchmark_model", f"--graph={REMOTE}/model.tflite",
            "--signature_to_run_for=infer", "--num_threads=2", "--num_runs=20", "--use_xnnpack=false",
            "--enable_op_profiling=false", "--report_peak_memory_footprint=true"] in fake_adb.calls()


def test_cli_failure_is_one_line_without_traceback(fake_adb, local_files, tmp_path):
    fake_adb.configure({"S1": {**PIXEL, "state": "offline"}}, {"*": "infer_xnnpack_ok.log"})
    model, binary = local_files
    result = run_cli("--serial", "S1", "--model", str(model), "--benchmark_binary", str(binary),
                     "--results_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: phone S1: adb says it is offline")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_importing_module_defines_no_global_flags():
    from absl import flags

    assert "use_xnnpack" not in flags.FLAGS
    assert callable(android.run)
