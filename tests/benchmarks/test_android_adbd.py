"""The adb runner end to end against a REAL adb daemon: Debian's adbd in a chroot, served in a
network namespace on a loopback port (benchmarks/android/adbd.py), driven by the real adb
client and server in the same namespace.

The device is a Debian trixie root with adbd only (benchmarks/android/device_root.sh amd64):
it lacks TFLite, so the runner must push the library bundle of our tflite_transfer_bench
(built in the C++ testing root, runtime/cpp/setup_testing_root.sh) and start it through the
bundle's own loader. Connect, push, shell, pull and the report are all real; the figures are
checked for sense, never for speed. Needs root (namespace, chroot); CI runs as root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks.android.adb import Device
from benchmarks.android.adbd import AdbdDevice, build_device_root
from benchmarks.android.runner import REMOTE_DIR, RunPlan, run_on_devices
from benchmarks.android.staging import ProgramBundle, bundle_from_debian_root
from benchmarks.common.report import read_report
from tflite_transfer.runtime.errors import InvalidInputError, TransferError

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "runtime" / "cpp" / "setup_testing_root.sh"
TESTING_ROOT = Path(os.environ.get("TFLITE_TRANSFER_TESTING_ROOT",
                                   Path.home() / ".cache" / "tflite_transfer_testing_root"))
BUILD_DIR = Path("/tmp/tflite_transfer_adb_test_build")
# Per test session: parallel sessions serve the same cached root, each through its own adbd.
REMOTE = f"{REMOTE_DIR}_{os.getpid()}"
SIGNATURE_ROWS = {("load", 1), ("infer", 1), ("train", 1), ("train", 8), ("train", 32),
                  ("train_images", 1), ("save", 1), ("restore", 1)}


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the real-adb tests need root (network namespace, chroot); CI runs as root")
        pytest.skip("the real-adb tests need root (network namespace, chroot)")


@pytest.fixture(scope="session")
def bench_bundle() -> ProgramBundle:
    """tflite_transfer_bench built in the C++ testing root, with every library it uses there."""
    _need_root()
    result = subprocess.run(["bash", str(SETUP_SCRIPT), str(BUILD_DIR)],
                            capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=3600)
    if result.returncode != 0:
        pytest.fail(f"setup_testing_root.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
    # The launcher the script wrote names the binary it runs with the root's libraries; the
    # bundle takes copies of it and of every library it uses in the root.
    launcher = (BUILD_DIR / "tflite_transfer_bench").read_text()
    program = re.search(r'"(\S+/tflite_transfer_bench)"', launcher).group(1)
    return bundle_from_debian_root(TESTING_ROOT, Path(program))


@pytest.fixture(scope="session")
def adbd_device():
    """A real adbd (Debian trixie, amd64, no TFLite) connected through a real adb server."""
    _need_root()
    root, _ = build_device_root("amd64")
    with AdbdDevice(root) as device:
        yield device


def plan_for(device, bundle: ProgramBundle, model: str, results_dir: Path, **overrides) -> RunPlan:
    settings = dict(model=Path(model), bundle=bundle, adb=device.adb, serials=(device.serial,), runs=3,
                    results_dir=results_dir, remote_dir=REMOTE)
    settings.update(overrides)
    return RunPlan(**settings)


def test_whole_run_over_real_adb_writes_the_report(adbd_device, bench_bundle, tiny_model_path, tmp_path):
    progress: list[str] = []
    measurements, json_path, markdown_path = run_on_devices(
        plan_for(adbd_device, bench_bundle, tiny_model_path, tmp_path), progress.append)

    # Every signature at every batch ran on the device and came back through `adb pull`.
    assert {(row.signature, row.batch) for row in measurements} == SIGNATURE_ROWS
    for row in measurements:
        assert not row.failed, row
        assert row.runs == 3
        assert 0 < row.min_us <= row.median_us <= row.max_us
        assert row.runtime.startswith("tflite_transfer_bench (TFLite 2.14")
        assert row.peak_memory_mib > 1  # VmHWM of a process that loaded TFLite
        assert row.extra["process_threads"] >= 1
    # The device lacked TFLite: the loader, libc and libtensorflow-lite were pushed.
    assert any("pushed" in line for line in progress)
    report = read_report(json_path)
    facts = report.machine[f"device {adbd_device.serial}"]
    assert "Debian GNU/Linux 13 (trixie)" in facts and "ABI x86_64" in facts
    pushed = report.machine[f"device {adbd_device.serial} TFLite"]
    assert "TFLite 2.14" in pushed and "libtensorflow-lite.so" in pushed and "ld-linux" in pushed
    assert "| train |" in markdown_path.read_text().replace("`", "")
    # The staging folder is gone from the device.
    listing = Device(adbd_device.adb, adbd_device.serial).shell(["ls", "/data/local/tmp"])
    assert Path(REMOTE).name not in listing.stdout


def test_program_json_is_what_the_device_printed(adbd_device, bench_bundle, tiny_model_path, tmp_path):
    # Run the pushed program by hand through adb and compare with the runner's reading.
    device = Device(adbd_device.adb, adbd_device.serial)
    from benchmarks.android.staging import stage

    staged = stage(device, bench_bundle, Path(tiny_model_path), REMOTE)
    try:
        result = device.shell([*staged.launcher, "--model", staged.remote_model, "--runs", "2",
                               "--train_batches", "4", "--checkpoint", f"{REMOTE}/c.ckpt"])
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["program"] == "tflite_transfer_bench"
        assert document["machine"]["arch"] == "x86_64"
        assert document["model"]["bottleneck_size"] > 0
        assert [(t["signature"], t["batch"]) for t in document["timings"]] == [
            ("load", 1), ("infer", 1), ("train", 4), ("train_images", 1), ("save", 1), ("restore", 1)]
        assert all(len(t["run_us"]) == 2 for t in document["timings"])
    finally:
        device.shell(["rm", "-rf", REMOTE])


def test_program_crash_is_one_line_with_exit_status_and_last_lines(adbd_device, bench_bundle, tmp_path):
    not_a_model = tmp_path / "broken.tflite"
    not_a_model.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(TransferError) as raised:
        run_on_devices(plan_for(adbd_device, bench_bundle, str(not_a_model), tmp_path))
    message = str(raised.value)
    assert "\n" not in message
    assert "tflite_transfer_bench exited with status 1" in message
    assert "last lines: error:" in message and "broken.tflite" in message
    assert not list(tmp_path.glob("*.json"))  # no report for a failed run


def test_program_for_another_abi_is_refused_before_any_push(adbd_device, bench_bundle, tiny_model_path,
                                                             tmp_path):
    # An ELF header saying AArch64 (e_machine 183): the check reads the header, nothing runs.
    arm64_program = tmp_path / "tflite_transfer_bench"
    header = bytearray(bench_bundle.program.read_bytes()[:64])
    header[18:20] = (183).to_bytes(2, "little")
    arm64_program.write_bytes(bytes(header))
    bundle = ProgramBundle(arm64_program)
    with pytest.raises(InvalidInputError, match=r"built for arm64-v8a but device 127\.0\.0\.1:\d+ runs "
                                                r"x86_64; build it for x86_64"):
        run_on_devices(plan_for(adbd_device, bundle, tiny_model_path, tmp_path))
    listing = Device(adbd_device.adb, adbd_device.serial).shell(["ls", "/data/local/tmp"])
    assert Path(REMOTE).name not in listing.stdout


def test_device_lacking_tflite_without_a_bundle_says_what_to_push(adbd_device, bench_bundle,
                                                                   tiny_model_path, tmp_path):
    bundle = ProgramBundle(bench_bundle.program)  # no libraries to push
    with pytest.raises(TransferError, match=r"lacks the TFLite shared library: pass it with --library"):
        run_on_devices(plan_for(adbd_device, bundle, tiny_model_path, tmp_path))


def test_push_failure_is_one_clear_error(adbd_device, bench_bundle, tiny_model_path, tmp_path):
    # A full device: the staging folder is a 16 KiB tmpfs in adbd's own mount namespace, too
    # small for the model, so adbd itself refuses the write (ENOSPC) and adb push fails.
    staging = f"{adbd_device.root}{REMOTE}"
    Path(staging).mkdir(parents=True, exist_ok=True)
    enter = ["nsenter", "-t", str(adbd_device.adbd_pid), "-m"]
    subprocess.run([*enter, "mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", staging], check=True)
    try:
        assert Path(tiny_model_path).stat().st_size > 16 * 1024
        with pytest.raises(TransferError, match=r"^device 127\.0\.0\.1:\d+: could not push .*tiny_transfer"
                                                r"\.tflite to .* \(.*\); check the free space"):
            run_on_devices(plan_for(adbd_device, bench_bundle, tiny_model_path, tmp_path))
    finally:
        subprocess.run([*enter, "umount", staging], check=True)
        Path(staging).rmdir()


def test_no_device_and_unknown_serial_are_clear_errors(adbd_device, bench_bundle, tiny_model_path, tmp_path):
    plan = plan_for(adbd_device, bench_bundle, tiny_model_path, tmp_path, serials=("127.0.0.1:6999",))
    with pytest.raises(TransferError, match=r"device 127\.0\.0\.1:6999: not attached \(adb lists: 127"):
        run_on_devices(plan)
    subprocess.run([*adbd_device.adb, "disconnect", adbd_device.serial], capture_output=True, stdin=subprocess.DEVNULL, check=True)
    try:
        with pytest.raises(TransferError, match=r"^no device attached: plug in a phone"):
            run_on_devices(plan_for(adbd_device, bench_bundle, tiny_model_path, tmp_path, serials=()))
    finally:
        subprocess.run([*adbd_device.adb, "connect", adbd_device.serial], capture_output=True, stdin=subprocess.DEVNULL, check=True)


def test_the_device_stops_what_it_started_and_deletes_its_namespace():
    _need_root()
    root, _ = build_device_root("amd64")
    device_server = AdbdDevice(root, namespace=f"tflite-adb-stop-{os.getpid()}")
    with device_server as device:
        assert Device(device.adb, device.serial).shell_ok(["echo", "alive"]).strip() == "alive"
        namespace_inode = os.stat(f"/run/netns/{device.namespace}").st_ino
    assert device.namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True, stdin=subprocess.DEVNULL,
                                                  text=True).stdout
    # No process is left in that network namespace: not adbd, not the adb server, not a server
    # an adb client call might have forked on its own.
    left = []
    for process in Path("/proc").iterdir():
        try:
            if process.name.isdigit() and os.stat(process / "ns" / "net").st_ino == namespace_inode:
                left.append((process / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # exited meanwhile
    assert left == []
