"""Runs the installed compile-transfer console script in a subprocess, as a user would."""

from __future__ import annotations

import shutil
import subprocess
import sys


def run_cli(*flags: str, cwd=None) -> subprocess.CompletedProcess:
    script = shutil.which("compile-transfer")
    command = [script] if script else [sys.executable, "-m", "tflite_transfer.compiler.cli"]
    return subprocess.run([*command, *flags], capture_output=True, text=True, cwd=cwd, timeout=600)
