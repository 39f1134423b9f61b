"""Fixtures of the web runtime's tests (imported by its test modules): static-batch models compiled by the real compiler on
the tiny base, written to a directory that the Node tests and the served demo page read."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import compile_model
from tests.web.static_batch_stopgap import make_static_batch

WEB_DIR = Path(__file__).resolve().parents[2] / "runtime" / "web"
IMAGE_BATCH, TRAIN_BATCH = 1, 4


def require_tool(name: str) -> str:
    """The path of a tool the web tests need; in CI its absence fails (never a skip)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed: run .ci/install.d/50-web.sh (apt nodejs npm chromium; npm ci in runtime/web)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def web_packages() -> Path:
    """runtime/web/node_modules, installed from the lock file when missing."""
    require_tool("node")
    if not (WEB_DIR / "node_modules" / "@litertjs" / "core" / "wasm").is_dir():
        subprocess.run([require_tool("npm"), "ci", "--no-audit", "--no-fund"], cwd=WEB_DIR, check=True)
    return WEB_DIR / "node_modules"


@pytest.fixture(scope="session")
def web_models(tiny_classifier_path, tiny_pool_name, tmp_path_factory) -> Path:
    """tiny_static.tflite (image batch 1, train batch 4, SGD softmax head, 3 classes) and the
    same head compiled with dynamic shapes (tiny_dynamic.tflite), which LiteRT.js cannot run."""
    directory = tmp_path_factory.mktemp("web_models")
    dynamic = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                            labels=("red", "green", "blue"))
    (directory / "tiny_dynamic.tflite").write_bytes(dynamic.model_bytes)
    (directory / "tiny_static.tflite").write_bytes(make_static_batch(dynamic.model_bytes, IMAGE_BATCH, TRAIN_BATCH))
    return directory
