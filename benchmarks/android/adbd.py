"""A real adb device on this machine: Debian's adbd in a chroot, inside a network namespace.

`AdbdDevice` creates a namespace, starts `adbd` from a Debian root (device_root.sh builds it)
listening on a loopback port, starts an adb server in the same namespace (in the foreground,
so it has a PID we own), and connects to the daemon. The runner then talks the real adb
protocol to it: `connect`, `push`, `shell`, `pull`. On exit it stops both processes by PID
and deletes the namespace. adbd binds every address, hence the namespace; the port is not
5555, which an adb server also attaches on its own as `emulator-5554`. Needs root.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from tflite_transfer.runtime.errors import TransferError

DEVICE_ROOT_SCRIPT = Path(__file__).with_name("device_root.sh")
ADBD_PORT = 6520
START_TIMEOUT_S = 120.0  # adbd under qemu-user (arm64) starts in seconds; be generous


@dataclasses.dataclass(frozen=True)
class ConnectedDevice:
    """How to reach the daemon: the adb argv prefix (inside the namespace) and its serial."""

    adb: tuple[str, ...]
    serial: str
    namespace: str
    root: Path
    adbd_pid: int  # enter its mount namespace (nsenter -m) to change what the device sees


def build_device_root(arch: str, build_program: bool = False) -> tuple[Path, str | None]:
    """The cached Debian root with adbd for `arch` (amd64 or arm64), built on first use.

    With build_program, also the path (inside the root) of tflite_transfer_bench built there.
    The script's progress goes to our stderr: the first arm64 build takes many minutes.
    """
    argv = ["bash", str(DEVICE_ROOT_SCRIPT), arch, *(["--build"] if build_program else [])]
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=3 * 3600)
    if result.returncode != 0:
        raise TransferError(f"{' '.join(argv[1:])} failed with exit status {result.returncode} "
                            "(its messages are above).")
    lines = result.stdout.strip().splitlines()
    return Path(lines[0]), (lines[1] if build_program else None)


class AdbdDevice:
    """Context manager: adbd from `root` served in a fresh namespace; yields a ConnectedDevice."""

    def __init__(self, root: Path, port: int = ADBD_PORT, namespace: str | None = None):
        self.root = Path(root)
        self.port = port
        self.namespace = namespace or f"tflite-adb-{os.getpid()}"
        self.adb = ("ip", "netns", "exec", self.namespace, "adb")
        self._processes: list[subprocess.Popen] = []
        self._namespace_made = False
        self.log_dir = Path(f"/tmp/{self.namespace}")

    def __enter__(self) -> ConnectedDevice:
        if os.geteuid() != 0:
            raise TransferError("serving adbd needs root (network namespace, chroot); run as root.")
        if not (self.root / "usr/sbin/adbd").exists():
            raise TransferError(f"{self.root}: no usr/sbin/adbd; build the root with "
                                f"{DEVICE_ROOT_SCRIPT} first.")
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return ConnectedDevice(self.adb, f"127.0.0.1:{self.port}", self.namespace, self.root,
                               self._processes[0].pid)

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _check(["ip", "netns", "add", self.namespace])
        self._namespace_made = True
        _check(["ip", "netns", "exec", self.namespace, "ip", "link", "set", "lo", "up"])
        # `ip netns exec` runs its command in a private mount namespace: the root's /proc (which
        # programs on the device read, e.g. VmHWM) is mounted there and vanishes with adbd.
        # `ip netns exec`, `sh -c exec` and `chroot` exec their command: the PID is adbd's own.
        root = shlex.quote(str(self.root))
        self._spawn("adbd", ["ip", "netns", "exec", self.namespace, "sh", "-c",
                             f"mount -t proc proc {root}/proc && exec chroot {root} /usr/bin/env -i "
                             f"PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root ADBD_PORT={self.port} "
                             "/usr/sbin/adbd"])
        self._spawn("adb-server", [*self.adb, "server", "nodaemon"])
        deadline = time.monotonic() + START_TIMEOUT_S
        # Any adb client call made before our server listens would fork a server of its own (a
        # process we would not own): wait for port 5037 in the namespace first.
        while not self._server_listening():
            if self._processes[-1].poll() is not None or time.monotonic() > deadline:
                raise TransferError(f"the adb server in namespace {self.namespace} did not start; "
                                    f"see {self.log_dir}/adb-server.log.")
            time.sleep(0.1)
        serial = f"127.0.0.1:{self.port}"
        while True:
            for process in self._processes:
                if process.poll() is not None:
                    raise TransferError(f"{process.args[-1]} exited with status {process.returncode} "
                                        f"right after starting; see {self.log_dir}.")
            said = subprocess.run([*self.adb, "connect", serial], capture_output=True, stdin=subprocess.DEVNULL, text=True,
                                  timeout=60)
            devices = subprocess.run([*self.adb, "devices"], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
            if f"{serial}\tdevice" in devices.stdout:
                return
            if time.monotonic() > deadline:
                raise TransferError(f"adbd in {self.root} did not come up on {serial} within "
                                    f"{START_TIMEOUT_S:.0f} s (adb connect said: {said.stdout.strip()}"
                                    f"{said.stderr.strip()}); see {self.log_dir}.")
            time.sleep(0.5)

    def _server_listening(self) -> bool:
        listening = subprocess.run(["ip", "netns", "exec", self.namespace, "ss", "-Hltn", "sport = :5037"],
                                   capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
        return bool(listening.stdout.strip())

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self._processes.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True))

    def __exit__(self, *exc_info) -> None:
        # Server first (it holds the connection), then the daemon; each by its own PID. Shells
        # adbd started are in its session: they get the same signal through the process group.
        for process in reversed(self._processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        self._processes.clear()
        if self._namespace_made:
            subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
            self._namespace_made = False


def _check(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
    if result.returncode != 0:
        raise TransferError(f"`{' '.join(argv)}` failed: {result.stderr.strip() or result.returncode}")
