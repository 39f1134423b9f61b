"""What a device is (ABI, model, Android or Linux version) and which ABI a program is built for.

Android answers `getprop`; a Linux device (a Raspberry Pi, the Debian adbd root the tests use)
has no getprop but answers `uname` and /etc/os-release. One shell call asks both and the
parser takes what the device gave. ABIs use Android's names (arm64-v8a, armeabi-v7a, x86_64,
x86) so a phone and a Linux board compare directly with the program's ELF header.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tflite_transfer.runtime.errors import InvalidInputError, TransferError

from benchmarks.android.adb import Device

# One line per fact, "key=value"; getprop prints "" for an unset property and is absent on Linux.
FACTS_SCRIPT = (
    "for p in ro.product.cpu.abi ro.product.cpu.abilist ro.product.manufacturer ro.product.model "
    "ro.build.version.release ro.build.version.sdk; do "
    "echo \"$p=$(getprop $p 2>/dev/null)\"; done; "
    "echo \"uname.m=$(uname -m)\"; echo \"uname.r=$(uname -r)\"; "
    "echo \"os=$(grep '^PRETTY_NAME=' /etc/os-release 2>/dev/null | cut -d= -f2- | tr -d '\\\"')\""
)

# `uname -m` and ELF e_machine to Android ABI names.
_UNAME_ABI = {"aarch64": "arm64-v8a", "arm64": "arm64-v8a", "armv7l": "armeabi-v7a",
              "armv8l": "armeabi-v7a", "x86_64": "x86_64", "i686": "x86", "i386": "x86"}
_ELF_MACHINE_ABI = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}


@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    """A device as the report names it; empty strings where the device did not say."""

    serial: str
    abi: str                 # the primary ABI, Android's name
    abis: tuple[str, ...]    # every ABI it runs (Android's abilist; else just `abi`)
    model: str               # "Google Pixel 7", or "" on Linux
    os: str                  # "Android 14 (SDK 34)" or "Debian GNU/Linux 13 (trixie)"
    kernel: str

    @property
    def label(self) -> str:
        return f"{self.model or self.os or 'device'} ({self.serial})"

    @property
    def is_android(self) -> bool:
        return self.os.startswith("Android")


def parse_device_facts(serial: str, output: str) -> DeviceFacts:
    """Read FACTS_SCRIPT's output (pure: tests feed it Android and Linux answers)."""
    said: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and value.strip():
            said[key.strip()] = value.strip()
    abi = said.get("ro.product.cpu.abi") or _UNAME_ABI.get(said.get("uname.m", ""), said.get("uname.m", ""))
    if not abi:
        raise TransferError(f"device {serial}: reports neither ro.product.cpu.abi nor `uname -m`; "
                            "is it an Android or Linux device with a shell?")
    abilist = tuple(name for name in said.get("ro.product.cpu.abilist", "").split(",") if name)
    if "ro.build.version.release" in said:
        sdk = said.get("ro.build.version.sdk")
        os_name = f"Android {said['ro.build.version.release']}" + (f" (SDK {sdk})" if sdk else "")
    else:
        os_name = said.get("os", "")
    model = " ".join(part for part in (said.get("ro.product.manufacturer", ""),
                                        said.get("ro.product.model", "")) if part)
    return DeviceFacts(serial=serial, abi=abi, abis=abilist or (abi,), model=model, os=os_name,
                       kernel=said.get("uname.r", ""))


def read_device_facts(device: Device) -> DeviceFacts:
    result = device.shell(["sh", "-c", FACTS_SCRIPT])
    return parse_device_facts(device.serial, result.stdout)


def program_abi(program: Path) -> str:
    """The Android ABI name of an ELF executable, from its header (e_machine)."""
    try:
        with open(program, "rb") as stream:
            header = stream.read(20)
    except OSError as error:
        raise InvalidInputError(f"{program}: cannot read the program ({error.strerror}).") from None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise InvalidInputError(f"{program}: not an ELF executable; pass the tflite_transfer_bench "
                                "built for the device (BUILD.md, 'On-device benchmark').")
    byteorder = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], byteorder)
    return _ELF_MACHINE_ABI.get(machine, f"ELF machine {machine}")


def check_abi(program: Path, facts: DeviceFacts) -> None:
    """Refuse a program built for an ABI the device cannot run, before pushing anything."""
    built_for = program_abi(program)
    if built_for not in facts.abis:
        raise InvalidInputError(
            f"{program} is built for {built_for} but device {facts.serial} runs "
            f"{', '.join(facts.abis)}; build it for {facts.abi} (BUILD.md, 'On-device benchmark': "
            f"-DANDROID_ABI={facts.abi}) or use the matching --program.")
