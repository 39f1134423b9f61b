"""Session fixtures of the C++ runtime's tests: the demo built against Debian's stock
libtensorflow-lite 2.14 (runtime/cpp/setup_testing_root.sh), and a contract-version-2 model."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.cpp_runtime import rewrite_model

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "runtime" / "cpp" / "setup_testing_root.sh"
TESTING_ROOT = Path(os.environ.get("TFLITE_TRANSFER_TESTING_ROOT",
                                   Path.home() / ".cache" / "tflite_transfer_testing_root"))


@pytest.fixture(scope="session")
def cpp_demo(tmp_path_factory) -> str:
    """Builds the C++ runtime in the Debian testing root (created on first use, then cached)."""
    if os.geteuid() != 0 and not os.environ.get("CI") and not TESTING_ROOT.is_dir():
        pytest.skip("building the C++ runtime needs root (debootstrap + chroot); CI runs it as root")
    build_dir = tmp_path_factory.mktemp("cpp_build")
    started = time.monotonic()
    result = subprocess.run(["bash", str(SETUP_SCRIPT), str(build_dir)], capture_output=True,
                            text=True, timeout=3600)
    if result.returncode != 0:
        pytest.fail(f"setup_testing_root.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
    print(f"C++ runtime set up and built in {time.monotonic() - started:.1f} s")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def tiny_v2_model_path(tiny_fused, tmp_path_factory) -> str:
    """The tiny model with contract-version-2 metadata and a valid model digest."""
    path = tmp_path_factory.mktemp("models_v2") / "tiny_transfer_v2.tflite"
    path.write_bytes(rewrite_model(tiny_fused.model_bytes))
    return str(path)
