"""Runs the installed compile-transfer console script in a subprocess, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def console_script() -> str | None:
    """The compile-transfer script of this Python's install (a venv's bin/), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "compile-transfer")
    return beside if os.path.isfile(beside) else shutil.which("compile-transfer")


def run_cli(*flags: str, cwd=None, prefix: list[str] = (), timeout: float = 600) -> subprocess.CompletedProcess:
    """`prefix`: a command that runs the script (unshare, setpriv, ...)."""
    script = console_script()
    command = [script] if script else [sys.executable, "-m", "tflite_transfer.compiler.cli"]
    return subprocess.run([*prefix, *command, *flags], capture_output=True, stdin=subprocess.DEVNULL, text=True, cwd=cwd,
                          timeout=timeout)
