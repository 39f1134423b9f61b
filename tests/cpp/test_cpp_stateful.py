"""Stateful bases in the C++ runtime (BUILD.md, "Stateful bases"): models compiled by the Python
compiler on streaming bases that keep state in resource variables (tests/fixtures/
stateful_bases.py), run through the C++ demo. One stream per model: every `load` call advances
it as one call of the original; `initialize` rewinds it; checkpoints carry it by name, -inf
included, bit for bit between Python and C++; a count of inputs that is not a multiple of the
base's batch is refused (never padded); training on bottlenecks leaves it alone and does not
take its -inf for divergence. References: the Python runtime on the same files, and the base
run eagerly in TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.cpp_runtime import assert_one_error_line, assert_same_bits, epoch_losses, run_demo
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.checkpoint import read_checkpoint, write_checkpoint
from tflite_transfer.runtime.errors import InvalidInputError

FRAMES = np.random.default_rng(3).normal(size=(6, 6)).astype(np.float32)   # 6 calls of [1, 6]


@pytest.fixture(scope="module")
def stream_model(stateful_compiled, tmp_path_factory) -> str:
    """A softmax head on the float streaming base (ring buffer and frame counter; batch 1)."""
    path = tmp_path_factory.mktemp("stateful_cpp") / "stream.tflite"
    path.write_bytes(stateful_compiled("float").model_bytes)
    return str(path)


@pytest.fixture(scope="module")
def peak_model(stateful_compiled, tmp_path_factory) -> str:
    """The same plus a running maximum that starts at -inf (a legitimately non-finite state)."""
    path = tmp_path_factory.mktemp("stateful_cpp") / "peak.tflite"
    path.write_bytes(stateful_compiled("peak").model_bytes)
    return str(path)


def cpp_load(demo, model, frames, tmp_path, *flags, name="bottlenecks") -> np.ndarray:
    np.save(tmp_path / f"{name}_in.npy", frames)
    run_demo(demo, "--model", model, *flags, "--images", tmp_path / f"{name}_in.npy", "--epochs", 0,
             "--save_bottlenecks", tmp_path / f"{name}.npy")
    return np.load(tmp_path / f"{name}.npy")


def test_the_stream_advances_per_call_and_initialize_rewinds_it(cpp_demo, stream_model, stateful_files, tmp_path):
    python = TransferModel.open(stream_model)
    fresh = python.load(FRAMES)                                     # one call per frame, from the start
    _, base = stateful_files("float")
    eager = np.concatenate(base.reference(list(FRAMES[:, None])))  # TensorFlow, call after call
    np.testing.assert_allclose(fresh, eager, rtol=1e-5, atol=1e-5)
    assert not np.allclose(fresh[0], fresh[3])                     # the state changes the features
    described = run_demo(cpp_demo, "--model", stream_model, "--epochs", 0).stdout
    assert "tensor 'input' float32 [6]" in described and "(a stateful base)" in described
    cpp = cpp_load(cpp_demo, stream_model, FRAMES, tmp_path)
    np.testing.assert_allclose(cpp, fresh, rtol=1e-5, atol=1e-6)
    # From Python's checkpoint after 3 frames the C++ stream continues where Python's did; with
    # --initialize after the restore it starts over.
    after3 = TransferModel.open(stream_model)
    after3.load(FRAMES[:3])
    after3.save_checkpoint(tmp_path / "after3.ckpt")
    continued = cpp_load(cpp_demo, stream_model, FRAMES[3:], tmp_path, "--restore", tmp_path / "after3.ckpt",
                         name="continued")
    np.testing.assert_allclose(continued, fresh[3:], rtol=1e-5, atol=1e-6)
    rewound = cpp_load(cpp_demo, stream_model, FRAMES, tmp_path, "--restore", tmp_path / "after3.ckpt",
                       "--initialize", name="rewound")
    assert rewound.tobytes() == cpp.tobytes()


def test_checkpoints_carry_the_stream_bit_for_bit_both_ways(cpp_demo, peak_model, tmp_path):
    python = TransferModel.open(peak_model)
    start = python.get_state()
    assert np.isneginf(start["base_state_feature_peak"]).all()
    python.save_checkpoint(tmp_path / "python_start.ckpt")
    # C++ restores the fresh stream, -inf and all, and writes the same bytes back.
    run_demo(cpp_demo, "--model", peak_model, "--restore", tmp_path / "python_start.ckpt", "--epochs", 0,
             "--checkpoint", tmp_path / "cpp_start.ckpt")
    assert (tmp_path / "cpp_start.ckpt").read_bytes() == (tmp_path / "python_start.ckpt").read_bytes()
    # After 3 frames in Python: restored in C++ bit for bit.
    python.load(FRAMES[:3])
    python.save_checkpoint(tmp_path / "python3.ckpt")
    run_demo(cpp_demo, "--model", peak_model, "--restore", tmp_path / "python3.ckpt", "--epochs", 0,
             "--checkpoint", tmp_path / "cpp_restored3.ckpt")
    assert_same_bits(read_checkpoint(tmp_path / "cpp_restored3.ckpt").tensors, python.get_state())
    # After 3 frames in C++: restored in Python bit for bit, and Python's stream continues from it.
    np.save(tmp_path / "three.npy", FRAMES[:3])
    run_demo(cpp_demo, "--model", peak_model, "--images", tmp_path / "three.npy", "--epochs", 0,
             "--checkpoint", tmp_path / "cpp3.ckpt")
    saved = read_checkpoint(tmp_path / "cpp3.ckpt").tensors
    assert int(saved["base_state_frame_count"][0]) == 3 and np.isfinite(saved["base_state_feature_peak"]).all()
    for name, value in python.get_state().items():                 # the same stream position
        np.testing.assert_allclose(saved[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    restored = TransferModel.open(peak_model)
    restored.restore_checkpoint(tmp_path / "cpp3.ckpt")
    assert_same_bits(restored.get_state(), saved)
    np.testing.assert_allclose(restored.load(FRAMES[3:]), python.load(FRAMES[3:]), rtol=1e-5, atol=1e-6)


def test_inputs_not_a_multiple_of_the_stream_batch_are_refused(cpp_demo, stateful_compiled, tmp_path):
    path = tmp_path / "batch2.tflite"
    path.write_bytes(stateful_compiled("batch2", 2, 4).model_bytes)
    np.save(tmp_path / "three.npy", FRAMES[:3])
    for signature_flags in ([], ["--test_labels", tmp_path / "labels.npy"]):
        np.save(tmp_path / "labels.npy", np.array([0, 1, 2]))
        result = run_demo(cpp_demo, "--model", path, "--images", tmp_path / "three.npy", "--epochs", 0,
                          *signature_flags, "--checkpoint", tmp_path / "never.ckpt", expect_ok=False)
        assert_one_error_line(result, "this model's base keeps state between calls, advanced once per call of 2 "
                              "inputs: pass a multiple of 2 inputs, got 3")
        assert not (tmp_path / "never.ckpt").exists()
    np.save(tmp_path / "four.npy", FRAMES[:4])
    run_demo(cpp_demo, "--model", path, "--images", tmp_path / "four.npy", "--epochs", 0,
             "--checkpoint", tmp_path / "four.ckpt")
    assert int(read_checkpoint(tmp_path / "four.ckpt").tensors["base_state_frame_count"][0]) == 2   # 2 calls of 2


def test_training_on_bottlenecks_leaves_the_stream_alone_and_its_minus_inf_is_no_divergence(cpp_demo, peak_model,
                                                                                             tmp_path):
    rng = np.random.default_rng(0)
    bottlenecks = rng.random((6, 5), dtype=np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    bottlenecks[np.arange(6), labels] += 1.0
    np.save(tmp_path / "b.npy", bottlenecks)
    np.save(tmp_path / "l.npy", labels)
    result = run_demo(cpp_demo, "--model", peak_model, "--bottlenecks", tmp_path / "b.npy", "--labels",
                      tmp_path / "l.npy", "--epochs", 3, "--checkpoint", tmp_path / "trained.ckpt")
    assert "imprinted the head" in result.stdout and len(epoch_losses(result.stdout)) == 3
    trained = read_checkpoint(tmp_path / "trained.ckpt").tensors
    start = TransferModel.open(peak_model).get_state()
    for name in ("base_state_feature_peak", "base_state_frame_count", "base_state_ring_buffer"):
        assert trained[name].tobytes() == start[name].tobytes(), name
    assert trained["dense_0_kernel"].tobytes() != start["dense_0_kernel"].tobytes()


def test_train_images_advances_the_stream_as_python_does(cpp_demo, stream_model, tmp_path):
    # One sample per step: the first step's loss is the watch's baseline, so the first frame gets
    # the class the compiled head finds least likely (the largest loss) and the others their
    # likeliest; a run that learns then stays below its start (the watch has nothing to say).
    probabilities = TransferModel.open(stream_model).predict(FRAMES)
    labels = probabilities.argmax(1).astype(np.int32)
    labels[0] = probabilities[0].argmin()
    python = TransferModel.open(stream_model)
    for frame, label in zip(FRAMES, labels):
        python.train_step(frame[None], label[None])
    python.predict(FRAMES)                                          # the demo's accuracy pass: 6 more calls
    np.save(tmp_path / "frames.npy", FRAMES)
    np.save(tmp_path / "labels.npy", labels)
    run_demo(cpp_demo, "--model", stream_model, "--images", tmp_path / "frames.npy", "--labels", tmp_path / "labels.npy",
             "--train_on", "images", "--epochs", 1, "--checkpoint", tmp_path / "cpp.ckpt")
    saved = read_checkpoint(tmp_path / "cpp.ckpt").tensors
    assert int(saved["step"][0]) == 6 and int(saved["base_state_frame_count"][0]) == 12
    for name, value in python.get_state().items():
        np.testing.assert_allclose(saved[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_state_with_a_non_finite_head_is_refused_but_base_state_may_be(cpp_demo, peak_model, tmp_path):
    python = TransferModel.open(peak_model)
    state = python.get_state()
    state["base_state_ring_buffer"] = np.full_like(state["base_state_ring_buffer"], np.nan)
    write_checkpoint(tmp_path / "nan_stream.ckpt", state, python.metadata.fingerprint)
    run_demo(cpp_demo, "--model", peak_model, "--restore", tmp_path / "nan_stream.ckpt", "--epochs", 0)
    state["dense_0_bias"] = np.full_like(state["dense_0_bias"], -np.inf)
    write_checkpoint(tmp_path / "bad_head.ckpt", state, python.metadata.fingerprint)
    result = run_demo(cpp_demo, "--model", peak_model, "--restore", tmp_path / "bad_head.ckpt", "--epochs", 0,
                      expect_ok=False)
    assert_one_error_line(result, "state 'dense_0_bias': contains NaN or Inf")


def test_a_tensor_input_with_a_range_is_checked_in_values_not_pixels(cpp_demo, stateful_files, tmp_path):
    """A non-image input whose range the app feeds is recorded (--input_range, with the base's
    own --base_input_range): refused outside it with Python's line, which says "values"."""
    from tests.helpers import compile_model

    path, base = stateful_files("float")
    compiled = compile_model(path, base.features, num_classes=3, learning_rate=0.1,
                             interface={"input_range": "-1,1", "base_input_range": "-4,4"})
    model_path = tmp_path / "ranged_stream.tflite"
    model_path.write_bytes(compiled.model_bytes)
    python = TransferModel.open(str(model_path))
    assert (python.input_spec.kind, python.input_spec.range) == ("tensor", (-1.0, 1.0))
    np.save(tmp_path / "frames.npy", FRAMES)                       # normal values: some beyond [-1, 1]
    result = run_demo(cpp_demo, "--model", model_path, "--images", tmp_path / "frames.npy", "--epochs", 0,
                      expect_ok=False)
    with pytest.raises(InvalidInputError) as python_refusal:
        python.load(FRAMES)
    assert str(python_refusal.value).startswith("input: values span [") and "takes values in [-1, 1]" in str(python_refusal.value)
    assert assert_one_error_line(result) == f"error: {python_refusal.value}"
    inside = np.clip(FRAMES, -1, 1)
    np.save(tmp_path / "inside.npy", inside)
    run_demo(cpp_demo, "--model", model_path, "--images", tmp_path / "inside.npy", "--epochs", 0,
             "--save_bottlenecks", tmp_path / "inside_bottlenecks.npy")
    np.testing.assert_allclose(np.load(tmp_path / "inside_bottlenecks.npy"), python.load(inside), rtol=1e-5, atol=1e-6)
