"""The adb runner's parsing edge cases that a real adb daemon cannot produce here.

The real protocol is tested end to end in test_android_adbd.py (Debian's adbd). What a Linux
adbd cannot show is what phones say (getprop answers, unauthorized or offline states, several
devices at once): for those, tests/benchmarks/fake_adb.py answers like a phone. Also here: the
pure parsers (device facts, ELF ABI, the bench program's JSON and exit status), the report
round trip, bad plans and the command line. benchmark_model: test_android_benchmark_model.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.android.adb import parse_devices, select_devices
from benchmarks.android.bench_program import describe_exit, measurements_from, parse_bench_json
from benchmarks.android.device import check_abi, parse_device_facts, program_abi
from benchmarks.android.runner import run_on_devices
from benchmarks.android.staging import ProgramBundle
from benchmarks.common.report import Measurement, format_duration, read_report, write_report
from fake_adb import GALAXY, PIXEL, elf_header, fake_adb, local_files, make_plan  # noqa: F401 (fixtures)
from tflite_transfer.runtime.errors import InvalidInputError, TransferError

REPO_ROOT = Path(__file__).parents[2]


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
                          capture_output=True, stdin=subprocess.DEVNULL, text=True, env=os.environ.copy())


def test_cli_help_reads_like_a_man_page():
    result = run_cli("--help")  # argparse prints the module docstring, then the flags
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


def test_cli_without_model_is_one_line():
    result = run_cli("--threads", "1")
    assert result.returncode == 1 and result.stderr == "error: --model is required; see --help.\n"


def test_emulate_refuses_unknown_architectures_before_building_anything(tmp_path):
    from benchmarks.android.emulate import run_emulated

    with pytest.raises(InvalidInputError, match="--emulate=riscv64: emulated architectures are arm64"):
        run_emulated("riscv64", tmp_path / "m.tflite", 1, (1,), (1,), tmp_path)
