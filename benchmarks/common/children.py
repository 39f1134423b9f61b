"""Run one script of benchmarks/common/peers/ as a child process with a JSON plan; read its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PEERS_DIR = Path(__file__).parent / "peers"
CHILD_TIMEOUT_S = 600


def run_child(script: str, plan: dict | None = None, python: str = sys.executable,
              env: dict | None = None, args: tuple[str, ...] = ()) -> dict:
    """The child's result dict, or {"error": ...} with the last line of its stderr."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(plan or {}, handle)
    command = [python, str(PEERS_DIR / script), *( [handle.name] if plan is not None else []), *args]
    environment = {**(env or os.environ), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=CHILD_TIMEOUT_S,
                                env=environment)
    except subprocess.TimeoutExpired:
        return {"error": f"{script} timed out after {CHILD_TIMEOUT_S} s"}
    finally:
        os.unlink(handle.name)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        stderr = [line for line in result.stderr.splitlines() if line.strip()]
        return {"error": f"{script} exited {result.returncode}: {stderr[-1] if stderr else '(no output)'}"}
    return json.loads(lines[-1])
