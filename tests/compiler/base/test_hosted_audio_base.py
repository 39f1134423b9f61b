"""A hosted raw-audio base as users bring it: the keyword model shipped in PyPI
word-activation-recognition 0.1.1 (MIT; `.ci/install.d/10-base.sh` takes its .tflite from the
wheel into ~/.cache/tflite_transfer_hosted, checked by sha256). It takes float32 audio [b, 44032] and computes its spectrogram inside
(SHAPE -> SLICE with sizes computed when it runs, RFFT2D), so fixing its batch must not fix those
sizes: it used to fail the compile ("slice.cc ... 44032 != 1"). Cut at its 2,000 dense features.
Here `load` of the compiled model is compared with the original file run alone in LiteRT,
training runs through the Python runtime, and a checkpoint round-trips."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import compile_model
from tflite_transfer.runtime.model import TransferModel

HOSTED = Path.home() / ".cache" / "tflite_transfer_hosted" / "star_trek_activation_phrase_v2.tflite"
SHA256 = "1c016cd5f9f474300efab376e4b36010856979c31a9cf7ee9392f1dae0fe3785"
CUT = "combined_model/model3/dense_1/MatMul;combined_model/model3/dense_1/BiasAdd;combined_model/model3/dense_1/Relu"
SAMPLES = 44032


@pytest.fixture(scope="module")
def base_path() -> str:
    assert HOSTED.is_file(), f"{HOSTED} is missing: run bash .ci/install.d/10-base.sh"
    assert hashlib.sha256(HOSTED.read_bytes()).hexdigest() == SHA256
    return str(HOSTED)


def original_cut(base_path: str, audio: np.ndarray) -> np.ndarray:
    """The cut tensor of the user's file, one clip per call (the base's own batch here)."""
    from ai_edge_litert.interpreter import Interpreter

    rows = []
    for clip in audio:
        interpreter = Interpreter(base_path, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], clip[None])
        interpreter.invoke()
        cut = next(t for t in interpreter.get_tensor_details() if t["name"] == CUT)
        rows.append(interpreter.get_tensor(cut["index"]))
    return np.concatenate(rows)


def test_the_hosted_audio_base_compiles_trains_and_keeps_its_features(base_path, tmp_path):
    result = compile_model(base_path, CUT, num_classes=3)
    assert (result.metadata.image_batch, result.metadata.bottleneck_size) == (1, 2000)
    path = tmp_path / "keyword.tflite"
    path.write_bytes(result.model_bytes)

    rng = np.random.default_rng(0)
    tones = [np.sin(2 * np.pi * f * np.arange(SAMPLES) / 16000) for f in (300.0, 1200.0, 3000.0)]
    audio = np.stack([0.3 * tones[k % 3] + 0.02 * rng.normal(size=SAMPLES) for k in range(9)]).astype(np.float32)
    labels = np.arange(9) % 3

    model = TransferModel.open(path)
    np.testing.assert_array_equal(model.load(audio), original_cut(base_path, audio))
    model.add_samples(audio, labels)
    losses = model.fit(epochs=5, progress=False)
    assert np.isfinite(losses).all()
    assert (model.predict(audio).argmax(axis=1) == labels).all()
    model.save_checkpoint(tmp_path / "me.ckpt")
    again = TransferModel.open(path)
    again.restore_checkpoint(tmp_path / "me.ckpt")
    np.testing.assert_array_equal(again.predict(audio), model.predict(audio))
