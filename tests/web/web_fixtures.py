"""Fixtures of the web runtime's tests (imported by its test modules): models compiled by the
real compiler on the tiny base (`--batch=1,4` and dynamic; contract version 3 with the example
app's interface; stateful bases), written to a directory that the Node tests and the served demo
page read, and references computed by the Python runtime (web_references.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import compile_model
from tests.web import web_references
from tflite_transfer.compiler.passes import batch

WEB_DIR = Path(__file__).resolve().parents[2] / "runtime" / "web"
IMAGE_BATCH, TRAIN_BATCH = 1, 4
_BUILT: dict[str, Path] = {}


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
    same head compiled with dynamic shapes (tiny_dynamic.tflite), which LiteRT.js cannot run;
    tiny_mse.tflite: a 2-output MSE head (float targets instead of class ids); tiny_app.tflite:
    contract version 3 as TensorFlow's example app calls it (input `feature` in [0, 1], output
    `output`, one-hot labels)."""
    # Each test module that imports this fixture gets its own instance of it: compile once.
    if "web_models" in _BUILT:
        return _BUILT["web_models"]
    directory = tmp_path_factory.mktemp("web_models")
    for name, batches in (("tiny_dynamic", batch.BatchOptions()),
                          ("tiny_static", batch.BatchOptions(IMAGE_BATCH, TRAIN_BATCH))):
        result = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                               labels=("red", "green", "blue"), batch_options=batches)
        (directory / f"{name}.tflite").write_bytes(result.model_bytes)
    mse = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=2, loss="mse", learning_rate=0.5,
                        batch_options=batch.BatchOptions(IMAGE_BATCH, TRAIN_BATCH))
    (directory / "tiny_mse.tflite").write_bytes(mse.model_bytes)
    app = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                        labels=("red", "green", "blue"), interface=web_references.APP_INTERFACE,
                        batch_options=batch.BatchOptions(IMAGE_BATCH, TRAIN_BATCH))
    (directory / "tiny_app.tflite").write_bytes(app.model_bytes)
    _BUILT["web_models"] = directory
    return directory


def reference_interpreter(model_path: Path):
    """The Python LiteRT interpreter: the independent reference for what the page computes."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(model_path))


def tensors_as_json(tensors: dict) -> dict:
    return {name: {"dtype": str(np.asarray(value).dtype), "shape": list(np.shape(value)),
                   "data": np.asarray(value).ravel().tolist()} for name, value in tensors.items()}


@pytest.fixture(scope="session")
def node_fixtures(web_models, stateful_compiled) -> Path:
    """What the Node tests compare against, computed in Python: the model's metadata as
    contract.py reads it, `load` of fixed images, the state after fixed `train` steps, a
    checkpoint of that state written by the Python writer, and an imprinting reference; the
    version 3 model's loads, imprint and steps; a stateful base's stream (stream_peak.tflite:
    batch 1, a running maximum starting at -inf; stream_batch2.tflite: two inputs per call) and
    its checkpoints; the divergence watch; Python's number formatting."""
    from tflite_transfer.runtime import checkpoint, contract

    directory = web_models
    model_path = directory / "tiny_static.tflite"
    model_bytes = model_path.read_bytes()
    interpreter = reference_interpreter(model_path)
    runners = {key: interpreter.get_signature_runner(key) for key in interpreter.get_signature_list()}
    metadata = contract.ModelMetadata.from_json(_metadata_json(model_bytes))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 16, 12, 3), dtype=np.uint8)
    bottlenecks = np.concatenate([runners["load"](image=image[None])["bottleneck"] for image in images])
    train_bottlenecks = rng.normal(size=(3, TRAIN_BATCH, metadata.bottleneck_size)).astype(np.float32)
    train_labels = rng.integers(0, 3, (3, TRAIN_BATCH)).astype(np.int32)
    runners["initialize"]()
    losses = [float(runners["train"](bottleneck=b, label=l)["loss"][0])
              for b, l in zip(train_bottlenecks, train_labels)]
    trained = {name: np.array(value) for name, value in runners["save"]().items()}
    checkpoint.write_checkpoint(directory / "python.ckpt", trained, metadata.fingerprint,
                                {"num_samples_cached": "0"})
    imprint_bottlenecks = rng.normal(size=(7, metadata.bottleneck_size)).astype(np.float32) + 2
    imprint_labels = np.array([0, 0, 2, 2, 2, 0, 2], np.int32)   # class 1 absent
    reference = {
        "metadata": json.loads(metadata.to_json()),
        "images": images.ravel().tolist(), "bottlenecks": bottlenecks.ravel().tolist(),
        "train_bottlenecks": train_bottlenecks.ravel().tolist(), "train_labels": train_labels.ravel().tolist(),
        "losses": losses, "trained_state": tensors_as_json(trained),
        "imprint_bottlenecks": imprint_bottlenecks.ravel().tolist(), "imprint_labels": imprint_labels.tolist(),
        "imprint": tensors_as_json(imprint_reference(imprint_bottlenecks, imprint_labels, 3)),
    }
    for name, variant, image_batch in (("stream_peak", "peak", IMAGE_BATCH), ("stream_batch2", "batch2", 2)):
        (directory / f"{name}.tflite").write_bytes(stateful_compiled(variant, image_batch, TRAIN_BATCH).model_bytes)
    reference.update(
        app=web_references.app_reference(directory / "tiny_app.tflite"),
        stream=web_references.stream_reference(directory / "stream_peak.tflite", directory),
        divergence=web_references.divergence_reference(model_path),
        formats=web_references.format_reference())
    (directory / "reference.json").write_text(json.dumps(reference))
    # The digest scheme on bytes of our own (any model version): Python stamps, JS checks.
    sample = b"\x00head" + b'{"model_digest":"' + contract.DIGEST_PLACEHOLDER.encode() + b'"}' + bytes(range(256)) * 3
    (directory / "digest_sample.bin").write_bytes(contract.stamp_digest(sample))
    return directory


def _metadata_json(model_bytes: bytes) -> bytes:
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.runtime import contract

    model = model_io.read_model_bytes(model_bytes)
    entry = next(e for e in model.metadata if e.name.decode() == contract.METADATA_KEY)
    return model_io.buffer_bytes(model, entry.buffer)


def imprint_reference(bottlenecks: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    """Nearest-class-mean as a linear layer, in float64 (BUILD.md, "The Python runtime")."""
    x = bottlenecks.astype(np.float64)
    present = np.unique(labels)
    means = np.stack([x[labels == c].mean(axis=0) for c in present])
    distances = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    scale = 8.0 / max(float(distances.mean()), 1e-12)
    kernel = np.zeros((classes, x.shape[1]))
    bias = np.zeros(classes)
    kernel[present] = scale * means
    bias[present] = -scale * (means ** 2).sum(-1) / 2
    absent = np.setdiff1d(np.arange(classes), present)
    bias[absent] = bias[present].min() - 10.0 - scale * distances.max()
    return {"dense_0_kernel": kernel.astype(np.float32), "dense_0_bias": bias.astype(np.float32)}
