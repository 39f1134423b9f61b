"""TFLite's benchmark_model through the adb runner (`--tool benchmark_model`), on a fake adb.

No benchmark_model binary exists for this machine, so its logs are replayed from real-format
fixtures in tests/benchmarks/data/ (see the README there) by tests/benchmarks/fake_adb.py.
"""

import json
import math

import pytest

from benchmarks.android.benchmark_model import parse_benchmark_output
from benchmarks.android.runner import run_on_devices
from benchmarks.common.report import read_report
from fake_adb import DATA, PIXEL, REMOTE, fake_adb, local_files, make_plan  # noqa: F401 (fixtures)
from tflite_transfer.runtime.errors import TransferError


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
