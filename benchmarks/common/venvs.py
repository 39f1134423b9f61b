"""Virtual environments the benchmarks build for themselves, cached between runs: the peers'
(host and speed benchmarks) and one per old runtime (compatibility matrix).

Each peer needs an interpreter this project's environment cannot host:
- the Flex recipe runs its save/restore only where Flex is linked into `tf.lite`'s Python
  interpreter, which is TF 2.18.1 (2.19-2.21 fail, LiteRT issue #6458);
- ONNX Runtime training 1.19.2 imports only with torch present, and needs onnx 1.16.2 (newer
  onnx writes IR version 14, which it refuses). torch is pinned exactly: a looser pin pulls
  gigabytes of CUDA wheels.

    python -m benchmarks.common.venvs         # create (or check) the peers' venvs, print their pythons

Venvs live under $TFLITE_TRANSFER_BENCH_CACHE (default ~/.cache/tflite_transfer_bench/), one
folder per spec. A venv counts as ready when its marker file holds the exact install steps;
change a pin and it is rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

INSTALL_TIMEOUT_S = 1500


@dataclasses.dataclass(frozen=True)
class VenvSpec:
    name: str                                     # folder under the cache, e.g. "tf-2.12.1"
    # Each step is one `pip install` argument list, run in order.
    install_steps: tuple[tuple[str, ...], ...]
    # Python run inside the venv after installing; it must exit 0 and print a JSON line of
    # versions. None: no probe (the caller's own script reports what it finds).
    probe: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    upgrade_pip: bool = True                      # old runtimes' venvs keep the bundled pip


FLEX_ENV = VenvSpec(
    name="flex-tf2.18.1",
    install_steps=(
        ("tensorflow-cpu==2.18.1",),
        # The recipe is written for tf.keras; TF 2.18's tf.keras is Keras 3 unless tf-keras is
        # installed and TF_USE_LEGACY_KERAS=1. With Keras 3 the converted recipe has no
        # CALL_ONCE and `train` fails in READ_VARIABLE. --no-deps: tf-keras would pull the full
        # `tensorflow` wheel in beside tensorflow-cpu.
        ("--no-deps", "tf-keras==2.18.0"),
    ),
    probe="import tensorflow as tf, tf_keras, json; print(json.dumps({'tensorflow': tf.__version__, "
          "'tf_keras': tf_keras.__version__}))",
    env=(("TF_USE_LEGACY_KERAS", "1"),),
)

ORT_ENV = VenvSpec(
    name="ort-training-1.19.2",
    install_steps=(
        ("torch==2.13.0",),
        ("onnxruntime-training==1.19.2", "onnx==1.16.2"),
    ),
    probe="import onnxruntime, onnx, torch, numpy, json; from onnxruntime.training import artifacts; "
          "print(json.dumps({'onnxruntime-training': onnxruntime.__version__, 'onnx': onnx.__version__, "
          "'torch': torch.__version__, 'numpy': numpy.__version__}))",
)

PEER_ENVS = (FLEX_ENV, ORT_ENV)


@dataclasses.dataclass(frozen=True)
class ReadyVenv:
    """A venv that installed and passed its probe (python is None and error set otherwise)."""

    spec: VenvSpec
    python: str | None
    versions: dict
    setup_seconds: float
    error: str | None = None

    def environ(self) -> dict[str, str]:
        return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **dict(self.spec.env)}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "tflite_transfer_bench"
    return Path(os.environ.get("TFLITE_TRANSFER_BENCH_CACHE", default))


def ensure_venv(spec: VenvSpec, progress=print) -> ReadyVenv:
    """Create the venv unless its marker matches; return its python or the reason it failed."""
    start = time.perf_counter()
    directory = cache_dir() / spec.name
    python = directory / "bin" / "python"
    marker = directory / "installed.json"
    wanted = json.dumps([list(step) for step in spec.install_steps])
    try:
        if not (marker.exists() and marker.read_text() == wanted and python.exists()):
            progress(f"  creating venv {directory} (first run only; pip install {wanted})")
            shutil.rmtree(directory, ignore_errors=True)
            directory.parent.mkdir(parents=True, exist_ok=True)
            _run([sys.executable, "-m", "venv", str(directory)], spec)
            if spec.upgrade_pip:
                _run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], spec)
            for step in spec.install_steps:
                _run([str(python), "-m", "pip", "install", "--quiet", *step], spec)
            marker.write_text(wanted)
        versions = {}
        if spec.probe is not None:
            probe = subprocess.run([str(python), "-c", spec.probe], capture_output=True, stdin=subprocess.DEVNULL, text=True,
                                   timeout=300, env={**os.environ, **dict(spec.env)})
            if probe.returncode != 0:
                raise RuntimeError(f"probe failed: {_last_line(probe.stderr)}")
            versions = json.loads(probe.stdout.strip().splitlines()[-1])
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        return ReadyVenv(spec, None, {}, time.perf_counter() - start, error=f"{spec.name}: {error}")
    return ReadyVenv(spec, str(python), versions, time.perf_counter() - start)


def _run(command: list[str], spec: VenvSpec) -> None:
    result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=INSTALL_TIMEOUT_S,
                            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[-3:])}` failed: {_last_line(result.stderr or result.stdout)}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


if __name__ == "__main__":
    for peer in PEER_ENVS:
        ready = ensure_venv(peer)
        print(peer.name, ready.python, ready.versions, f"{ready.setup_seconds:.0f} s", ready.error or "")
