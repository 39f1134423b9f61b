"""TransferModel's checks of meaning: bad values of every kind refused with one line and no
state change, learning rate and step ranges (also in restored checkpoints), divergence, and
the fixed-batch behaviour (runtime/SPEC.md#fixed-batches) on a model whose signatures fix their batch."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import colour_images
from benchmarks.fuzz.subjects import rewrite_model
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.checkpoint import write_checkpoint
from tflite_transfer.runtime.errors import (CheckpointError, InvalidInputError, TrainingDivergedError,
                                            VerificationError)
from tflite_transfer.runtime.inputs import MAX_STEP

IMAGE = (16, 12, 3)


@pytest.fixture(scope="module")
def tiny_bytes(tiny_fused) -> bytes:
    return rewrite_model(tiny_fused.model_bytes)


@pytest.fixture(scope="module")
def fixed_bytes(tiny_classifier_path, tiny_pool_name) -> bytes:
    """The tiny model compiled with --batch=3,4 (static image batch 3, train batch 4)."""
    from tests.helpers import compile_model
    from tflite_transfer.compiler.passes import batch

    compiled = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                             batch_options=batch.BatchOptions(3, 4))
    return rewrite_model(compiled.model_bytes, image_batch=3, train_batch=4)  # stamped, v2


def assert_unchanged(model, before):
    for name, value in model.get_state().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


BAD_CALLS = {
    "lr str": (lambda m: m.set_learning_rate("0.1"), "must be a real number, got str"),
    "lr None": (lambda m: m.set_learning_rate(None), "got NoneType"),
    "lr array of 2": (lambda m: m.set_learning_rate(np.array([0.1, 0.2])), "got ndarray"),
    "lr bool": (lambda m: m.set_learning_rate(True), "got bool"),
    "lr zero": (lambda m: m.set_learning_rate(0), r"> 0 and <= 1e\+06, got 0.0"),
    "lr negative": (lambda m: m.set_learning_rate(-1.0), "got -1.0"),
    "lr huge": (lambda m: m.set_learning_rate(1e39), "got 1e\\+39"),
    "lr inf": (lambda m: m.set_learning_rate(float("inf")), "got inf"),
    "lr 10**400": (lambda m: m.set_learning_rate(10**400), "<= 1e\\+06, got inf"),
    "lr -10**400": (lambda m: m.set_learning_rate(-10**400), "got -inf"),
    "epochs 10**12": (lambda m: m.fit(epochs=10**12), r"1000000000001 more step\(s\) would pass 2147483646"),
    "epochs float": (lambda m: m.fit(epochs=2.5), "epochs must be an integer >= 1, got float 2.5"),
    "epochs bool": (lambda m: m.fit(epochs=True), "got bool"),
    "batch zero": (lambda m: m.fit(batch_size=0), "batch_size must be an integer >= 1"),
    "state None": (lambda m: m.set_state(None), "state must be a dict"),
    "state lr 0": (lambda m: m.set_state({**m.get_state(), "learning_rate": np.zeros(1, np.float32)}),
                   "state 'learning_rate' must be finite, > 0"),
    "state step -5": (lambda m: m.set_state({**m.get_state(), "step": np.array([-5], np.int32)}),
                      r"step -5 is outside \[0, 2147483646\]"),
    "state ragged": (lambda m: m.set_state({**m.get_state(), "dense_0_bias": [[1.0], [1.0, 2.0]]}),
                     "not a rectangular numeric array"),
    "empty predict": (lambda m: m.predict(np.zeros((0, *IMAGE), np.uint8)), "image: the batch is empty"),
    "empty load": (lambda m: m.load(np.zeros((0, *IMAGE), np.uint8)), "the batch is empty"),
    "empty add": (lambda m: m.add_samples(np.zeros((0, *IMAGE), np.uint8), []), "the batch is empty"),
    "empty train": (lambda m: m.train_bottlenecks(np.zeros((0, 7), np.float32), []), "bottleneck: the batch is empty"),
    "ragged images": (lambda m: m.predict([np.zeros(IMAGE), np.zeros((2, 2))]), "image: not a rectangular"),
    "string images": (lambda m: m.predict(np.full(IMAGE, "a")), "image: dtype <U1 is not numeric"),
    "object images": (lambda m: m.predict(np.array([object()])), "image: dtype object"),
    "string labels": (lambda m: m.train_bottlenecks(np.zeros((1, 7)), ["cat"]), "label: dtype <U3"),
    "bool bottlenecks": (lambda m: m.add_bottlenecks(np.zeros((1, 7), bool), [0]), "dtype bool"),
    "None bottlenecks": (lambda m: m.add_bottlenecks(None, [0]), "bottleneck: dtype object"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_values_are_one_line_errors_and_change_nothing(tiny_bytes, case):
    call, message = BAD_CALLS[case]
    model = TransferModel.open(tiny_bytes)
    model.add_bottlenecks(np.ones((2, 7), np.float32), [0, 1])
    before = model.get_state()
    with pytest.raises(InvalidInputError, match=message) as raised:
        call(model)
    assert "\n" not in str(raised.value)
    assert_unchanged(model, before)
    assert model.num_samples == 2


@pytest.mark.parametrize("name, value, message", [
    ("learning_rate", np.array([-1.0], np.float32), "must be finite, > 0"),
    ("learning_rate", np.array([0.0], np.float32), "must be finite, > 0"),
    ("learning_rate", np.array([1e38], np.float32), "<= 1e\\+06"),
    ("step", np.array([-5], np.int32), "step -5 is outside"),
    ("step", np.array([2**31 - 1], np.int32), "step 2147483647 is outside"),
])
def test_checkpoints_with_meaningless_values_are_refused(tiny_bytes, tmp_path, name, value, message):
    model = TransferModel.open(tiny_bytes)
    path = tmp_path / "odd.ckpt"
    write_checkpoint(path, {**model.get_state(), name: value}, model.metadata.fingerprint)
    images, labels = colour_images(2, seed=1)
    model.train_step(images, labels)
    before = model.get_state()
    with pytest.raises(CheckpointError, match=message):
        model.restore_checkpoint(path)
    assert_unchanged(model, before)


def test_training_stops_before_the_step_counter_wraps(tiny_bytes):
    model = TransferModel.open(tiny_bytes)
    model.set_state({**model.get_state(), "step": np.array([MAX_STEP - 1], np.int32)})
    model.train_bottlenecks(np.ones((1, 7), np.float32), [0])  # the last step allowed
    assert model.steps == MAX_STEP
    before = model.get_state()
    with pytest.raises(InvalidInputError, match="step counter is 2147483646; 1 more step.*reset"):
        model.train_bottlenecks(np.ones((1, 7), np.float32), [0])
    model.add_bottlenecks(np.ones((4, 7), np.float32), [0, 1, 2, 0])
    with pytest.raises(InvalidInputError, match="step counter"):
        model.fit(epochs=1, progress=False)
    assert_unchanged(model, before)


def test_divergence_is_reported_and_fit_rolls_back(tiny_bytes):
    model = TransferModel.open(tiny_bytes)
    model.set_learning_rate(1e6)
    bottlenecks = np.full((6, 7), 1e18, np.float32) * np.arange(1, 7, dtype=np.float32)[:, None]
    model.add_bottlenecks(bottlenecks, [0, 1, 2, 0, 1, 2])
    before = model.get_state()
    with pytest.raises(VerificationError, match="training diverged in epoch 1: .*rolled back.*lower the "
                                                "learning rate"):
        model.fit(epochs=3, batch_size=2, progress=False, imprint=False)
    assert_unchanged(model, before)
    for _ in range(5):  # single steps: the one that diverges is undone
        before = model.get_state()
        try:
            model.train_bottlenecks(bottlenecks[:2], [0, 1])
        except TrainingDivergedError as error:
            assert "the step was undone" in str(error)
            break
    else:
        pytest.fail("five steps at learning rate 1e6 on 1e18 features did not diverge")
    assert_unchanged(model, before)


@pytest.mark.parametrize("learning_rate, value, message", [
    (0.1, 3e38, "the loss is (nan|inf)"),                 # the loss overflows
    (1e6, 1e37, "dense_0_kernel became NaN/Inf"),         # a finite loss, an update beyond float32
])
def test_a_single_step_that_diverges_is_undone(tiny_bytes, learning_rate, value, message):
    """A one-step call that fails leaves weights, slots and step as they were (the step used
    to stay applied: finite weights changed, the error said they were probably NaN)."""
    model = TransferModel.open(tiny_bytes)
    model.set_learning_rate(learning_rate)
    before, steps = model.get_state(), model.steps
    with pytest.raises(TrainingDivergedError, match=f"{message}; the step was undone") as raised:
        model.train_bottlenecks(np.full((1, 7), value, np.float32), [2])
    assert "\n" not in str(raised.value)
    assert_unchanged(model, before)
    assert model.steps == steps
    assert np.isfinite(model.train_bottlenecks(np.ones((2, 7), np.float32), [0, 1]))
    assert model.steps == steps + 1


def test_a_failed_step_after_good_ones_goes_back_to_the_state_just_before_it(tiny_bytes):
    """One `save` per single step: the state after a step is the next step's snapshot, until
    any other signature runs (here set_learning_rate, which the snapshot must then include)."""
    model = TransferModel.open(tiny_bytes)
    ones = np.ones((2, 7), np.float32)
    model.train_bottlenecks(ones, [0, 1])
    model.train_bottlenecks(ones, [1, 2])
    model.set_learning_rate(1e6)
    before = model.get_state()
    with pytest.raises(TrainingDivergedError, match="the step was undone"):
        model.train_bottlenecks(np.full((1, 7), 1e37, np.float32), [2])
    assert_unchanged(model, before)           # two steps in, learning rate 1e6: as it was
    model.set_learning_rate(0.1)
    after_good = None
    for labels in ([0, 1], [2, 0]):
        model.train_bottlenecks(ones, labels)
        after_good = model.get_state()
    model._signatures["set_learning_rate"](learning_rate=np.array([1e6], np.float32))  # any other run
    with pytest.raises(TrainingDivergedError, match="the step was undone"):
        model.train_bottlenecks(np.full((1, 7), 1e37, np.float32), [2])
    state = model.get_state()
    assert state["learning_rate"][0] == np.float32(1e6)     # not the stale snapshot's 0.1
    for name in ("dense_0_kernel", "dense_0_bias", "step"):
        np.testing.assert_array_equal(state[name], after_good[name])


def test_a_train_step_on_images_that_diverges_is_undone(tiny_bytes):
    model = TransferModel.open(tiny_bytes)
    state = model.get_state()
    # Finite weights whose logits differ by more than float32 holds: class 1's probability is 0.
    state["dense_0_bias"] = np.array([3e38, -3e38, -3e38], np.float32)
    model.set_state(state)
    before = model.get_state()
    images, _ = colour_images(1, seed=3)
    with pytest.raises(TrainingDivergedError, match="the step was undone"):
        model.train_step(images, np.ones(len(images), np.int32))
    assert_unchanged(model, before)


def test_fit_with_a_batch_beyond_the_cache_trains_on_the_whole_cache(tiny_bytes):
    """batch_size=10**12 allocated a 10**12-row buffer (MemoryError); it means one batch."""
    rng = np.random.default_rng(4)
    bottlenecks, labels = rng.random((5, 7), np.float32), np.arange(5) % 3
    huge, exact = TransferModel.open(tiny_bytes), TransferModel.open(tiny_bytes)
    for model in (huge, exact):
        model.add_bottlenecks(bottlenecks, labels)
    assert huge.fit(epochs=2, batch_size=10**12, progress=False, imprint=False) == \
        exact.fit(epochs=2, batch_size=5, progress=False, imprint=False)
    for name, value in huge.get_state().items():
        np.testing.assert_array_equal(value, exact.get_state()[name], err_msg=name)


def test_fit_matches_manual_train_calls_bit_for_bit(tiny_bytes):
    rng = np.random.default_rng(3)
    bottlenecks = rng.random((10, 7), np.float32)
    labels = np.arange(10, dtype=np.int32) % 3
    fitted, manual = TransferModel.open(tiny_bytes), TransferModel.open(tiny_bytes)
    fitted.add_bottlenecks(bottlenecks, labels)
    losses = fitted.fit(epochs=2, batch_size=4, seed=9, progress=False, imprint=False)
    order_rng, manual_losses = np.random.default_rng(9), []
    for _ in range(2):
        order = order_rng.permutation(10)
        total = 0.0
        for start in range(0, 10, 4):
            batch = order[start:start + 4]
            total += manual.train_bottlenecks(bottlenecks[batch], labels[batch]) * len(batch)
        manual_losses.append(total / 10)
    assert losses == pytest.approx(manual_losses, rel=1e-6)
    for name, value in fitted.get_state().items():
        np.testing.assert_array_equal(value, manual.get_state()[name], err_msg=name)


# --- fixed batches -----------------------------------------------------------------------------

def test_fixed_image_batch_runs_in_padded_chunks_with_the_same_results(tiny_bytes, fixed_bytes):
    dynamic, fixed = TransferModel.open(tiny_bytes), TransferModel.open(fixed_bytes)
    assert (fixed.image_batch, fixed.train_batch) == (3, 4)
    images, _ = colour_images(3, seed=2)  # 9 images
    for count in (1, 2, 3, 4, 7):
        np.testing.assert_array_equal(fixed.predict(images[:count]), dynamic.predict(images[:count]))
        np.testing.assert_array_equal(fixed.load(images[:count]), dynamic.load(images[:count]))
        for signature in ("infer", "load"):  # the interpreter only ever saw batches of 3
            details = fixed._signatures[signature].input_details()["image"]
            assert details["shape"][0] == 3 and details["shape_signature"][0] == 3
    fixed.add_samples(images[:5], np.arange(5) % 3)
    assert fixed.num_samples == 5


def test_fixed_batches_need_exact_sizes_for_single_steps(fixed_bytes):
    model = TransferModel.open(fixed_bytes)
    images, labels = colour_images(2, seed=4)  # 6 images
    with pytest.raises(InvalidInputError, match="train_step: this model's signature takes exactly 3 samples"):
        model.train_step(images[:2], labels[:2])
    model.train_step(images[:3], labels[:3])
    with pytest.raises(InvalidInputError, match="train_bottlenecks: .*exactly 4 samples .*got 3"):
        model.train_bottlenecks(np.ones((3, 7), np.float32), [0, 1, 2])
    model.train_bottlenecks(np.ones((4, 7), np.float32), [0, 1, 2, 0])
    with pytest.raises(InvalidInputError, match="fixed batches of 4; pass batch_size=4"):
        model.add_bottlenecks(np.ones((4, 7), np.float32), [0, 1, 2, 0])
        model.fit(epochs=1, batch_size=5, progress=False)


def test_fit_with_a_fixed_train_batch_streams_whole_batches(fixed_bytes):
    model = TransferModel.open(fixed_bytes)
    rng = np.random.default_rng(6)
    model.add_bottlenecks(rng.random((10, 7), np.float32), np.arange(10) % 3)
    steps = model.steps
    losses = model.fit(epochs=3, progress=False)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert model.steps - steps == 30 // 4  # 7 batches of 4; 2 samples wait for the next call
    model.fit(epochs=1, progress=False)
    assert model.steps - steps == 40 // 4
    assert model._signatures["train"].input_details()["bottleneck"]["shape"][0] == 4


def test_no_single_bit_flip_of_a_checkpoint_is_restored(tiny_bytes, tmp_path):
    """Every bit of a real checkpoint of the tiny model flipped in turn: each restore raises
    CheckpointError and leaves the model's state as it was."""
    model = TransferModel.open(tiny_bytes)
    path = tmp_path / "me.ckpt"
    model.save_checkpoint(path)
    images, labels = colour_images(2, seed=8)
    model.train_step(images, labels)
    before = model.get_state()
    original = path.read_bytes()
    flipped = bytearray(original)
    for position in range(len(original)):
        for bit in range(8):
            flipped[position] = original[position] ^ (1 << bit)
            path.write_bytes(flipped)
            with pytest.raises(CheckpointError):
                model.restore_checkpoint(path)
        flipped[position] = original[position]
    assert_unchanged(model, before)
    path.write_bytes(original)
    model.restore_checkpoint(path)
    assert model.steps == 0
