"""The demo page in a real browser (headless Debian Chromium driven by playwright-core): it
opens a compiled static-batch model of contract version 3 (input `feature` in [0, 1], one-hot
labels: what TensorFlow's example app feeds) served from 127.0.0.1 cross-origin isolated
(LiteRT.js's threaded wasm), trains on images picked through its file inputs and a frame of
Chromium's fake camera (the loss falls), says so when a far too large learning rate diverges
(weights rolled back), predicts, and its checkpoints move to and from Python bit for bit.
Nothing is requested from another origin."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from PIL import Image

from tests.helpers import colour_images
from tests.web.page_server import serve
from tests.web.web_fixtures import (WEB_DIR, reference_interpreter, require_tool, web_models,  # noqa: F401
                                    web_packages)
from tflite_transfer.runtime import checkpoint, contract


def _write_images(directory, images, labels):
    paths = {label: [] for label in range(3)}
    for index, (image, label) in enumerate(zip(images, labels)):
        path = directory / f"sample_{index}.png"
        Image.fromarray(image).save(path)
        paths[int(label)].append(str(path))
    return [paths[label] for label in range(3)]


def _python_trained_checkpoint(model_path, directory):
    """A state the page has never had: 5 Python `train` steps, written by the Python writer."""
    interpreter = reference_interpreter(model_path)
    runner = lambda key: interpreter.get_signature_runner(key)  # noqa: E731
    rng = np.random.default_rng(11)
    runner("initialize")()
    for _ in range(5):   # the model takes one-hot label rows
        runner("train")(bottleneck=rng.normal(size=(4, 7)).astype(np.float32),
                        label=np.eye(3, dtype=np.float32)[rng.integers(0, 3, 4)])
    state = {name: np.array(value) for name, value in runner("save")().items()}
    metadata = contract.ModelMetadata.from_json(_metadata_bytes(model_path))
    path = directory / "python_trained.ckpt"
    checkpoint.write_checkpoint(path, state, metadata.fingerprint, {"num_samples_cached": "0"})
    return path, state, metadata


def _metadata_bytes(model_path):
    from tests.web.web_fixtures import _metadata_json

    return _metadata_json(model_path.read_bytes())


def _bits(array: np.ndarray) -> str:
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes().hex()


def test_demo_page_trains_and_exchanges_checkpoints_with_python(web_packages, web_models, tmp_path):
    node = require_tool("node")
    require_tool("chromium")
    model_path = web_models / "tiny_app.tflite"
    images, labels = colour_images(4, seed=2)                  # 12 images, 3 colour classes
    class_images = _write_images(tmp_path, images, labels)
    uploaded_path, uploaded_state, metadata = _python_trained_checkpoint(model_path, tmp_path)
    corrupt = bytearray(uploaded_path.read_bytes())
    corrupt[-3] ^= 0x40
    (tmp_path / "corrupt.ckpt").write_bytes(bytes(corrupt))
    (tmp_path / "not_an_image.png").write_bytes(b"this is not a PNG")
    plan = {"modelPath": "/models/tiny_app.tflite", "classImages": class_images, "epochs": 15, "learningRate": 1.0,
            "divergeLearningRate": 1e6,
            "predictImage": class_images[2][0], "downloadTo": str(tmp_path / "page.ckpt"),
            "uploadCheckpoint": str(uploaded_path), "corruptCheckpoint": str(tmp_path / "corrupt.ckpt"),
            "notAnImage": str(tmp_path / "not_an_image.png")}
    with serve(WEB_DIR, web_models, isolated=True) as origin:     # as runtime/web/serve.py serves it
        (tmp_path / "plan.json").write_text(json.dumps({**plan, "origin": origin}))
        result = subprocess.run([node, "browser/drive_demo.mjs", str(tmp_path / "plan.json")], cwd=WEB_DIR,
                                capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert "failure" not in report, (report.get("failure"), report.get("pageErrorAtFailure"))
    assert report["consoleErrors"] == [] and report["foreignRequests"] == []
    assert "3 classes, images 'feature' float32 [16,12,3] in [0, 1] (batch 1), train batch 4" in report["status"]
    assert "threads (cross-origin isolated" in report["runtimeMode"]      # the whole flow runs multi-threaded
    assert report["counts"] == [4, 4, 4]
    assert report["countsAfterCapture"] == [4, 4, 5]            # one frame of Chromium's fake camera
    assert abs(sum(report["cameraProbabilities"]) - 1) < 1e-5

    # Training in the page starts from a head fit imprinted first (the colour classes sit apart:
    # its first epoch is far below an untrained head's ln 3 = 1.1) and lowers the loss from there
    # steadily, up to the noise of the page's random batch order (12 samples, batch 4: 45 steps
    # over 15 epochs; the tiny base's bottlenecks are small, |x|^2 ~ 0.2, hence learning rate 1).
    losses = report["losses"]
    assert report["trainState"] == "done", report["trainStatus"]
    assert len(losses) == 15 and losses[0] < 0.05 and losses[-1] < losses[0] and max(losses) <= 1.01 * losses[0], losses
    assert "(45 steps in total)" in report["trainStatus"]

    # A rate far past the stable one (|x|^2 >= 0 makes 4 the largest stable rate for any
    # features): fit rolls the weights back to where that run started and the page says so,
    # proposing the stable rate for the cached samples.
    status = report["divergedStatus"]
    assert status.startswith("Training diverged, weights rolled back: training diverged in epoch 1: "), status
    assert report["divergedError"] == ""
    unchanged = lambda state: {n: e for n, e in state.items() if n != "learning_rate"}  # noqa: E731 (1e6 was set)
    assert unchanged(report["stateAfterDivergence"]) == unchanged(report["stateBeforeDivergence"])
    assert 0 < float(report["learningRateAfterDivergence"]) <= 4.0
    assert status.endswith(f"The learning rate field now holds {report['learningRateAfterDivergence']}.")
    assert abs(sum(report["probabilities"]) - 1) < 1e-5

    # The page's download restores bit-exactly in Python and is what Python writes for that state.
    downloaded = checkpoint.read_checkpoint(tmp_path / "page.ckpt")
    checkpoint.check_compatible(downloaded, {e.name: (e.shape, e.numpy_dtype) for e in metadata.state},
                                metadata.fingerprint)
    assert {name: _bits(value) for name, value in downloaded.tensors.items()} == \
        {name: entry["hex"] for name, entry in report["trainedState"].items()}
    interpreter = reference_interpreter(model_path)
    interpreter.get_signature_runner("restore")(**downloaded.tensors)
    restored = interpreter.get_signature_runner("save")()
    assert {n: _bits(v) for n, v in restored.items()} == {n: _bits(v) for n, v in downloaded.tensors.items()}
    checkpoint.write_checkpoint(tmp_path / "python_rewrite.ckpt", downloaded.tensors, metadata.fingerprint,
                                {"num_samples_cached": "13"})
    assert (tmp_path / "python_rewrite.ckpt").read_bytes() == (tmp_path / "page.ckpt").read_bytes()

    # A Python checkpoint uploaded to the page restores bit for bit; a damaged one is refused
    # with one line and changes nothing.
    assert report["uploadError"] == ""
    assert {n: e["hex"] for n, e in report["uploadedState"].items()} == {n: _bits(v) for n, v in uploaded_state.items()}
    assert report["corruptUploadError"].startswith("CheckpointError: corrupt.ckpt is corrupt or incomplete: its checksum")
    assert report["stateAfterCorruptUpload"] == report["uploadedState"]
    assert "not_an_image.png: not an image this browser can decode" in report["notAnImageError"]
