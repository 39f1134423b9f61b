"""A fake `adb` for what a real Linux adbd cannot say: phones' getprop answers, unauthorized
and offline states, several devices, and benchmark_model logs (replayed from data/).

A small Python script put first on PATH; it logs every call as a JSON line.
"""

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.android.runner import REMOTE_DIR, RunPlan
from benchmarks.android.staging import ProgramBundle

DATA = Path(__file__).parent / "data"
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
