"""The adb client as the runner uses it: pick the device, push, pull and run shell commands.

Every failure becomes one TransferError line naming the device and what to do. `adb` is an
argv prefix (`("adb",)` normally; `("ip", "netns", "exec", NS, "adb")` for the daemon the tests
start in a network namespace), so the same code drives a phone and the test device.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess

from tflite_transfer.runtime.errors import TransferError

ADB_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class AttachedDevice:
    """One line of `adb devices`: a serial and its state (device, unauthorized, offline...)."""

    serial: str
    state: str


def parse_devices(output: str) -> list[AttachedDevice]:
    """Read `adb devices` output; the banner and daemon start-up lines are skipped."""
    devices = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not line.startswith(("*", "List of devices")):
            devices.append(AttachedDevice(fields[0], fields[1]))
    return devices


def select_devices(adb: tuple[str, ...], serials: tuple[str, ...]) -> list[str]:
    """The serials to benchmark on: those asked for, or the one attached device.

    Refuses (TransferError) when nothing is attached, when several are and none was named,
    and when a chosen device is unauthorized, offline or absent.
    """
    result = run_adb([*adb, "devices"], ADB_TIMEOUT_S)
    if result.returncode != 0:
        raise TransferError(f"`adb devices` failed ({last_line(result)}); run `adb kill-server` "
                            "and retry.")
    attached = {device.serial: device.state for device in parse_devices(result.stdout)}
    if not serials:
        if not attached:
            raise TransferError("no device attached: plug in a phone with USB debugging on, or "
                                "`adb connect HOST:PORT`, then check `adb devices`.")
        if len(attached) > 1:
            raise TransferError(f"{len(attached)} devices attached ({', '.join(sorted(attached))}); "
                                "choose one with --serial SERIAL.")
        serials = tuple(attached)
    for serial in serials:
        state = attached.get(serial)
        if state is None:
            raise TransferError(f"device {serial}: not attached (adb lists: "
                                f"{', '.join(sorted(attached)) or 'nothing'}); check the cable or "
                                "`adb connect`, and the serial.")
        if state == "unauthorized":
            raise TransferError(f"device {serial}: unauthorized; accept the 'Allow USB debugging' "
                                "prompt on the phone, then rerun.")
        if state != "device":
            raise TransferError(f"device {serial}: adb says '{state}'; replug it (or `adb connect` "
                                "again) and wait until `adb devices` says 'device'.")
    return list(serials)


@dataclasses.dataclass(frozen=True)
class Device:
    """adb commands addressed to one device (`adb -s SERIAL ...`)."""

    adb: tuple[str, ...]
    serial: str

    def push(self, local: str, remote: str) -> None:
        self._must([*self.adb, "-s", self.serial, "push", local, remote], f"push {local} to {remote}",
                   "check the free space and that the folder is writable (`adb shell df`)")

    def pull(self, remote: str, local: str) -> None:
        self._must([*self.adb, "-s", self.serial, "pull", remote, local], f"pull {remote}",
                   "the program did not write it; see its output above")

    def shell(self, command: list[str], timeout_s: float = ADB_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run one command line on the device; the exit status is the remote program's.

        The words are quoted for the device's shell (adb joins them and the shell re-parses).
        """
        line = " ".join(shlex.quote(word) for word in command)
        return run_adb([*self.adb, "-s", self.serial, "shell", line], timeout_s)

    def shell_ok(self, command: list[str]) -> str:
        result = self.shell(command)
        if result.returncode != 0:
            raise TransferError(f"device {self.serial}: `{' '.join(command)}` failed "
                                f"({last_line(result)}).")
        return result.stdout

    def _must(self, argv: list[str], what: str, advice: str) -> None:
        result = run_adb(argv, ADB_TIMEOUT_S)
        if result.returncode != 0:
            raise TransferError(f"device {self.serial}: could not {what} ({last_line(result)}); "
                                f"{advice}.")


def run_adb(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TransferError(f"`{' '.join(argv)}` did not finish in {timeout_s:.0f} s; check the "
                            "device is awake and responsive.") from None
    except FileNotFoundError:
        raise TransferError(f"adb executable {argv[0]!r} not found; install Android platform-tools "
                            "(Debian: apt-get install adb) and put adb on PATH.") from None


def last_line(result: subprocess.CompletedProcess) -> str:
    """The last non-empty line of what a command said, else its exit status."""
    said = result.stderr if result.stderr.strip() else result.stdout
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"
