"""Bases whose input is not an image (tests/fixtures/tensor_bases.py), compiled and trained end to
end through the Python runtime: the contract's input is the base's input, named `input`,
described as a tensor, validated as one (shape, dtype, the range where one is known)."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tests.fixtures import tensor_bases
from tests.helpers import compile_model
from tflite_transfer.runtime import TransferModel, contract
from tflite_transfer.runtime.errors import InvalidInputError


def _write(tmp_path_factory, name: str, data: bytes) -> str:
    path = tmp_path_factory.mktemp("tensor_bases") / name
    path.write_bytes(data)
    return str(path)


def _fit_and_score(model: TransferModel, inputs: np.ndarray, labels: np.ndarray, epochs: int) -> list[float]:
    model.add_samples(inputs, labels)
    losses = model.fit(epochs=epochs, batch_size=8, progress=False)
    assert losses[-1] < 0.5 * losses[0], losses
    assert np.mean(model.predict(inputs).argmax(axis=1) == labels) >= 0.9
    return losses


def test_a_tabular_base(tmp_path_factory):
    path = _write(tmp_path_factory, "tabular.tflite", tensor_bases.tabular_base())
    result = compile_model(path, verify_steps=3, num_classes=3, optimizer="adam", learning_rate=0.05)
    metadata = result.metadata
    assert metadata.contract_version == 3 and metadata.tensor_names.input == "input"
    assert metadata.input == contract.InputSpec("tensor", "float32", (3,))
    assert metadata.signatures[contract.LOAD].inputs == ("input",)
    model = TransferModel.open(result.model_bytes)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8).astype(np.int32)
    rows = (np.eye(3)[labels] * 3 + rng.normal(0, 0.3, (24, 3))).astype(np.float32)
    _fit_and_score(model, rows, labels, epochs=60)
    for bad, message in ((np.zeros((2, 4), np.float32), r"^input: shape \[2, 4\] does not fit the model's \[batch, 3\]$"),
                         (np.array([[0, np.nan, 1]], np.float32), "^input: contains NaN or Inf$"),
                         (np.zeros((0, 3), np.float32), "^input: the batch is empty; pass at least one sample$")):
        with pytest.raises(InvalidInputError, match=message):
            model.predict(bad)


def test_a_feature_map_base_cut_at_a_time_map(tmp_path_factory):
    """[b, 3, 40] -> a [b, 3, 16] map: a cut of rank 3 takes an adapter too (pooling over time)."""
    path = _write(tmp_path_factory, "frames.tflite", tensor_bases.feature_map_base())
    result = compile_model(path, verify_steps=3, num_classes=2, optimizer="adam", learning_rate=0.05,
                           interface={"bottleneck_adapter": "mean"})
    assert result.metadata.bottleneck_adapter == {"kind": "mean", "cut_shape": [3, 16]}
    assert result.metadata.input == contract.InputSpec("tensor", "float32", (3, 40))
    model = TransferModel.open(result.model_bytes)
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(2), 8).astype(np.int32)
    frames = rng.random((16, 3, 40)).astype(np.float32)
    frames[labels == 1, :, :20] += 1.0  # class 1: energy in the low bins
    _fit_and_score(model, frames, labels, epochs=60)


@pytest.fixture(scope="module")
def audio_path(tmp_path_factory) -> str:
    return _write(tmp_path_factory, "audio_pcm.tflite", tensor_bases.audio_base())


def test_an_audio_base_fed_minus_one_to_one(audio_path):
    """The app feeds [-1, 1] floats; the base takes raw PCM (--base_input_range, which a .tflite
    cannot tell): MUL/ADD in front of the base, exactly the float32 arithmetic of the reference."""
    result = compile_model(audio_path, verify_steps=3, num_classes=3, optimizer="adam", learning_rate=0.05,
                           interface={"input_range": "-1,1", "base_input_range": "-32768,32767"})
    spec = result.metadata.input
    assert spec == contract.InputSpec("tensor", "float32", (tensor_bases.AUDIO_SAMPLES,), (-1.0, 1.0),
                                      tensor_bases.PCM_RANGE)
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 4).astype(np.int32)
    clips = rng.uniform(-1, 1, (12, tensor_bases.AUDIO_SAMPLES)) * np.array([0.02, 0.3, 0.9])[labels, None]
    clips = clips.astype(np.float32)
    # Against the original file run on the PCM values the scaling gives (same kernels: bit-exact).
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    scale = np.float32(65535.0 / 2.0)
    offset = np.float32(-32768.0 + scale)  # base = app * scale + offset, as model_input.py plans it
    reference = Interpreter(model_path=audio_path, experimental_op_resolver_type=builtin)
    reference.allocate_tensors()
    load = Interpreter(model_content=result.model_bytes, experimental_op_resolver_type=builtin)
    load = load.get_signature_runner("load")
    for clip in clips[::5]:
        reference.set_tensor(reference.get_input_details()[0]["index"], (clip * scale + offset)[None])
        reference.invoke()
        expected = reference.get_tensor(reference.get_output_details()[0]["index"])
        np.testing.assert_array_equal(load(input=clip[None])["bottleneck"], expected)
    model = TransferModel.open(result.model_bytes)
    _fit_and_score(model, clips, labels, epochs=80)
    with pytest.raises(InvalidInputError, match=r"^input: values span \[-2, 0\] but the model takes values in "
                                                r"\[-1, 1\]$"):
        model.predict(np.linspace(-2, 0, tensor_bases.AUDIO_SAMPLES, dtype=np.float32))


def test_an_input_range_without_the_bases_is_refused(audio_path):
    with pytest.raises(InvalidInputError, match=r"^--input_range=-1,1: the compiler does not know which values "
                                                r"the base .*audio_pcm.tflite expects \(float32 input, no "
                                                r"normalization metadata\); state them with --base_input_range"):
        compile_model(audio_path, num_classes=3, interface={"input_range": "-1,1"})
