"""TransferModel on a base that keeps state between calls (a streaming base, role
`base_state`): one stream per model, advanced by every call that runs the base, part of the
state and checkpoints, rewound by reset(); never padded; training leaves it alone."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_transfer.runtime import TransferModel, contract
from tflite_transfer.runtime.errors import InvalidInputError

RING, COUNT = "base_state_ring_buffer", "base_state_frame_count"


@pytest.fixture(scope="module")
def stream_model_path(stateful_compiled, tmp_path_factory):
    path = tmp_path_factory.mktemp("stateful_models") / "streaming.tflite"
    path.write_bytes(stateful_compiled("float").model_bytes)
    return str(path)


def frames(count: int, batch: int = 1, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count * batch, 6)).astype(np.float32)


def test_the_state_includes_the_base_stream(stream_model_path):
    model = TransferModel.open(stream_model_path)
    roles = {e.name: e.role for e in model.metadata.state}
    assert roles[RING] == roles[COUNT] == contract.BASE_STATE
    state = model.get_state()
    assert state[RING].shape == (1, 4, 6) and not state[RING].any() and state[COUNT].tolist() == [0.0]


def test_every_call_advances_the_stream_like_the_original(stream_model_path, stateful_files):
    _, base = stateful_files("float")
    sequence = frames(6)
    expected = np.concatenate(base.reference([row[None] for row in sequence]))    # TF eager
    one_by_one = TransferModel.open(stream_model_path)
    found = np.concatenate([one_by_one.load(row) for row in sequence])
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)
    at_once = TransferModel.open(stream_model_path)                                # chunks of 1, in order
    np.testing.assert_array_equal(at_once.load(sequence), found)
    assert at_once.get_state()[COUNT].tolist() == [6.0]


def test_reset_and_checkpoints_rewind_the_stream(stream_model_path, tmp_path):
    model = TransferModel.open(stream_model_path)
    sequence = frames(5)
    first = model.load(sequence)
    model.reset()
    np.testing.assert_array_equal(model.load(sequence), first)
    model.reset()
    model.load(sequence[:3])
    model.save_checkpoint(tmp_path / "after3.ckpt")
    later = model.load(sequence[3:])
    np.testing.assert_array_equal(later, first[3:])
    fresh = TransferModel.open(stream_model_path)                                  # restore first thing
    fresh.restore_checkpoint(tmp_path / "after3.ckpt")
    np.testing.assert_array_equal(fresh.load(sequence[3:]), later)


def test_samples_training_and_imprinting_leave_the_stream_alone(stream_model_path):
    model = TransferModel.open(stream_model_path)
    model.add_samples(frames(6), np.arange(6) % 3)          # six calls of the stream
    before = model.get_state()
    model.imprint()
    model.fit(epochs=3, batch_size=4, progress=False)
    after = model.get_state()
    for name in (RING, COUNT):
        np.testing.assert_array_equal(after[name], before[name])
    assert not np.array_equal(after["dense_0_kernel"], before["dense_0_kernel"])


def test_a_fixed_batch_stream_is_never_padded(stateful_compiled, tmp_path):
    path = tmp_path / "two_streams.tflite"
    path.write_bytes(stateful_compiled("batch2").model_bytes)
    model = TransferModel.open(str(path))
    assert model.image_batch == 2
    before = model.get_state()
    with pytest.raises(InvalidInputError, match="keeps state between calls, advanced once per call of 2 "
                                                "inputs: pass a multiple of 2 inputs, got 3"):
        model.load(frames(3))
    with pytest.raises(InvalidInputError, match="multiple of 2 inputs, got 1"):
        model.add_sample(frames(1)[0], 1)
    assert all(np.array_equal(model.get_state()[n], before[n]) for n in (RING, COUNT))   # nothing ran
    assert model.load(frames(2, batch=2)).shape == (4, 5)
    assert model.get_state()[COUNT].tolist() == [2.0]


def test_a_base_state_that_starts_at_minus_infinity_is_kept_as_it_is(stateful_compiled, stateful_files, tmp_path):
    """A running maximum starts at -inf: the base's own value, not a diverged weight. It passes
    the compile's checks, get_state/set_state, checkpoints and fit's divergence watch."""
    _, base = stateful_files("peak")
    path = tmp_path / "peak.tflite"
    path.write_bytes(stateful_compiled("peak").model_bytes)
    model = TransferModel.open(str(path))
    peak = "base_state_feature_peak"
    assert np.isneginf(model.get_state()[peak]).all()
    model.save_checkpoint(tmp_path / "start.ckpt")
    sequence = frames(4)
    np.testing.assert_allclose(model.load(sequence), np.concatenate(base.reference([r[None] for r in sequence])),
                               rtol=1e-5, atol=1e-5)
    model.add_samples(frames(3, seed=5), np.arange(3))
    model.fit(epochs=2, batch_size=3, progress=False)
    model.restore_checkpoint(tmp_path / "start.ckpt")        # back to -inf, accepted
    assert np.isneginf(model.get_state()[peak]).all()
    model.train_bottlenecks(np.ones((1, model.metadata.bottleneck_size), np.float32), [1])  # -inf stays: not a weight
    assert np.isneginf(model.get_state()[peak]).all()
    model.set_state(model.get_state())
