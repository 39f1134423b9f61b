"""Put the model and a program on the device, with the TFLite library when the device lacks it.

The program is pushed and asked for `--version` first. If the device's loader cannot find a
library (no libtensorflow-lite on a Linux board, no libtensorflowlite.so on a phone, a glibc too
old), the bundle's libraries are pushed next to it and the program is started through them:
with the bundle's own glibc loader for a Linux build (`ld-linux --library-path DIR PROGRAM`),
with LD_LIBRARY_PATH for an Android build. What was pushed is recorded for the report.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import os
import tempfile
from pathlib import Path

from tflite_transfer.runtime.errors import InvalidInputError, TransferError

from benchmarks.android.adb import Device, last_line

# What a loader says when a shared library (or the ELF interpreter itself) is missing:
# glibc ("error while loading shared libraries", "version `GLIBC_2.42' not found", and a bare
# "not found" / "No such file or directory" when the interpreter path does not exist) and
# Android's linker ("CANNOT LINK EXECUTABLE ... library "libtensorflowlite.so" not found").
_MISSING_LIBRARY = re.compile(r"error while loading shared libraries|CANNOT LINK EXECUTABLE|"
                              r"version `[^']+' not found|: not found$|No such file or directory",
                              re.M)
_WRONG_ABI = re.compile(r"Exec format error|not executable: (?:32|64)-bit ELF|syntax error")


@dataclasses.dataclass(frozen=True)
class ProgramBundle:
    """A program and the shared libraries it runs with where the device has none of its own."""

    program: Path
    libraries: tuple[Path, ...] = ()
    loader: Path | None = None  # glibc's ld-linux of a Linux build; None for Android builds


@dataclasses.dataclass(frozen=True)
class StagedProgram:
    """The program on the device: the command line that starts it and what had to be pushed."""

    launcher: tuple[str, ...]
    remote_model: str
    pushed_libraries: tuple[str, ...]
    version_line: str


def bundle_from_debian_root(root: Path, program: Path) -> ProgramBundle:
    """A program built against a Debian root (the file may live outside it), with every library
    `ldd` resolves for it in that root."""
    root, program = Path(root), Path(program)
    # ldd runs inside the root, so the program must be visible there: a copy in the root's /tmp.
    program_in_root = f"/tmp/{program.name}.{os.getpid()}"
    (root / program_in_root.lstrip("/")).write_bytes(program.read_bytes())
    (root / program_in_root.lstrip("/")).chmod(0o755)
    try:
        return _bundle(root, program_in_root, program.name)
    finally:
        (root / program_in_root.lstrip("/")).unlink(missing_ok=True)


def _bundle(root: Path, program_in_root: str, program_name: str) -> ProgramBundle:
    ldd = _chroot(root, ["ldd", program_in_root])
    needed, loader = [], None
    for line in ldd.splitlines():
        line = line.strip()
        if "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
            if path.startswith("/"):
                needed.append(path)
        elif line.startswith("/"):
            loader = line.split("(")[0].strip()
    if loader is None:
        raise TransferError(f"`ldd {program_in_root}` in {root} names no dynamic loader:\n{ldd}")
    # Resolve symlinks inside the root (their targets may be absolute paths of the root).
    resolved = _chroot(root, ["readlink", "-f", loader, *needed]).split()
    real_loader, real_libraries = resolved[0], resolved[1:]
    # Push each library under the name the program asks for (its soname), not the file's.
    libraries = []
    for wanted, real in zip(needed, real_libraries):
        libraries.append((Path(wanted).name, root / real.lstrip("/")))
    # Copies, taken now: another build in the same root may replace the files later.
    staging = Path(tempfile.mkdtemp(prefix="tflite_transfer_bundle_"))
    copies = []
    for name, source in [(program_name, root / program_in_root.lstrip("/")),
                         (Path(loader).name, root / real_loader.lstrip("/")), *libraries]:
        target = staging / name
        target.write_bytes(source.read_bytes())
        target.chmod(0o755)
        copies.append(target)
    return ProgramBundle(program=copies[0], libraries=tuple(copies[2:]), loader=copies[1])


def stage(device: Device, bundle: ProgramBundle, model: Path, remote_dir: str,
          probe_args: tuple[str, ...] | None = ("--version",)) -> StagedProgram:
    """Push model and program, probe the program, push the libraries if it cannot start.

    `probe_args=None` skips the probe (benchmark_model has no cheap, exit-0 flag to probe with).
    """
    remote_program = f"{remote_dir}/{bundle.program.name}"
    remote_model = f"{remote_dir}/{model.name}"
    device.shell_ok(["mkdir", "-p", f"{remote_dir}/lib"])
    device.push(str(model), remote_model)
    device.push(str(bundle.program), remote_program)
    device.shell_ok(["chmod", "755", remote_program])

    launcher: tuple[str, ...] = (remote_program,)
    if probe_args is None:
        return StagedProgram(launcher, remote_model, (), "")
    probe = device.shell([*launcher, *probe_args])
    pushed: list[str] = []
    said = probe.stdout + probe.stderr
    if probe.returncode != 0 and _WRONG_ABI.search(said):
        raise InvalidInputError(f"device {device.serial} cannot execute {bundle.program} "
                                f"({last_line(probe)}); it is built for another ABI.")
    if probe.returncode != 0 and _MISSING_LIBRARY.search(said):
        if not bundle.libraries:
            raise TransferError(
                f"device {device.serial}: {bundle.program.name} cannot start ({last_line(probe)}); "
                "the device lacks the TFLite shared library: pass it with --library "
                "(Android: libtensorflowlite.so from the LiteRT AAR's jni/<abi>/).")
        for library in ([bundle.loader] if bundle.loader else []) + list(bundle.libraries):
            remote = f"{remote_dir}/lib/{library.name}"
            device.push(str(library), remote)
            pushed.append(library.name)
        device.shell_ok(["chmod", "755", *(f"{remote_dir}/lib/{name}" for name in pushed)])
        if bundle.loader:
            launcher = (f"{remote_dir}/lib/{bundle.loader.name}", "--library-path", f"{remote_dir}/lib",
                        remote_program)
        else:
            launcher = ("env", f"LD_LIBRARY_PATH={remote_dir}/lib", remote_program)
        probe = device.shell([*launcher, *probe_args])
    if probe.returncode != 0:
        raise TransferError(f"device {device.serial}: `{bundle.program.name} {' '.join(probe_args)}` failed "
                            f"with exit status {probe.returncode} ({last_line(probe)}).")
    return StagedProgram(launcher=launcher, remote_model=remote_model, pushed_libraries=tuple(pushed),
                         version_line=probe.stdout.strip())


def _chroot(root: Path, argv: list[str]) -> str:
    result = subprocess.run(["chroot", str(root), *argv], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=600)
    if result.returncode != 0:
        raise TransferError(f"`chroot {root} {' '.join(argv)}` failed: "
                            f"{result.stderr.strip() or result.returncode}")
    return result.stdout
