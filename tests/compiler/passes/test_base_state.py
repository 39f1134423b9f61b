"""Stateful bases (compiler/passes/base_state.py, tests/fixtures/stateful_bases.py): every op
that writes state is kept, `load` follows the original's stream call after call (against TF
eager and the original file), the base's variables are part of save/restore/initialize, images
run at the base's own batch, and what cannot be exact is refused with one line."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tests.fixtures import stateful_bases
from tests.helpers import compile_model, interpreter
from tflite_transfer.compiler.cli import summary
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.passes import batch
from tflite_transfer.runtime import contract

RING, COUNT = "base_state_ring_buffer", "base_state_frame_count"


def frames(count: int, batch: int = 1, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, stateful_bases.FRAME)).astype(np.float32) for _ in range(count)]


def as_input(frame: np.ndarray, dtype) -> np.ndarray:
    if np.dtype(dtype) == np.int8:
        return np.clip(np.round(frame * 40), -128, 127).astype(np.int8)
    return frame.astype(dtype)


def op_counts(model, subgraph_index: int) -> collections.Counter:
    return collections.Counter(model_io.operator_name(model.operatorCodes[op.opcodeIndex])
                               for op in model.subgraphs[subgraph_index].operators)


STATE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")


@pytest.mark.parametrize("variant", ["float", "int8"])
def test_every_state_op_of_the_base_is_kept(stateful_files, stateful_compiled, variant):
    path, _ = stateful_files(variant)
    original = model_io.read_model(path)
    result = stateful_compiled(variant)
    fused = model_io.read_model_bytes(result.model_bytes)
    base_entry = next(i for i, s in enumerate(fused.subgraphs) if s.name == original.subgraphs[0].name)
    kept, given = op_counts(fused, base_entry), op_counts(original, 0)
    assert {op: kept[op] for op in STATE_OPS} == {op: given[op] for op in STATE_OPS}
    assert given["ASSIGN_VARIABLE"] == 2 and given["CALL_ONCE"] == 1
    # Only the classifier past the cut is dropped.
    assert given - kept == collections.Counter({"FULLY_CONNECTED": 1, "SOFTMAX": 1})


def run_load(model_bytes: bytes, inputs, xnnpack: bool = True) -> list[np.ndarray]:
    load = interpreter(model_bytes, xnnpack=xnnpack).get_signature_runner("load")
    return [np.array(load(input=value)["bottleneck"]) for value in inputs]


def run_original(path: str, inputs, xnnpack: bool = True) -> list[np.ndarray]:
    with open(path, "rb") as handle:
        runner = interpreter(handle.read(), xnnpack=xnnpack).get_signature_runner()
    return [np.array(runner(frame=value)["features"]) for value in inputs]


def test_load_follows_the_stream_like_tensorflow_eager(stateful_files, stateful_compiled):
    path, base = stateful_files("float")
    result = stateful_compiled("float")
    sequence = frames(7)
    sequence[4] = sequence[3]                               # the same frame twice: state shows
    expected = base.reference(sequence)                     # TF eager, the module itself
    for xnnpack in (True, False):
        found = run_load(result.model_bytes, sequence, xnnpack)
        for call, (value, reference) in enumerate(zip(found, expected)):
            np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5, err_msg=f"call {call}")
        for value, original in zip(found, run_original(path, sequence, xnnpack)):
            np.testing.assert_array_equal(value, original)  # the user's file, same kernels
    assert not np.array_equal(found[3], found[4])


def test_the_int8_base_follows_the_original_file(stateful_files, stateful_compiled):
    path, _ = stateful_files("int8")
    result = stateful_compiled("int8")
    sequence = [as_input(f, np.int8) for f in frames(6)]
    with open(path, "rb") as handle:
        details = interpreter(handle.read()).get_signature_runner().get_output_details()["features"]
    scale, zero_point = details["quantization"]
    for xnnpack in (True, False):
        found = run_load(result.model_bytes, sequence, xnnpack)
        levels = [np.round(value / scale) + zero_point for value in found]
        for level, original in zip(levels, run_original(path, sequence, xnnpack)):
            np.testing.assert_array_equal(level, original.astype(np.float64))
    assert len({value.tobytes() for value in found}) == len(found)


def test_save_restore_and_initialize_carry_the_stream(stateful_compiled):
    result = stateful_compiled("float")
    entries = {e.name: e for e in result.metadata.entries_with_role(contract.BASE_STATE)}
    assert set(entries) == {RING, COUNT} and entries[RING].shape == (1, 4, 6) and entries[RING].dtype == "float32"
    runner = interpreter(result.model_bytes)
    signature = runner.get_signature_runner
    sequence = frames(5)
    fresh = run_load(result.model_bytes, sequence)
    load = signature("load")
    for value in sequence[:3]:
        load(input=value)
    saved = signature("save")()
    expected_ring = np.concatenate([np.zeros((1, 1, 6), np.float32)] + [f[:, None] for f in sequence[:3]], axis=1)
    np.testing.assert_array_equal(saved[RING], expected_ring)
    np.testing.assert_array_equal(saved[COUNT], np.array([3], np.float32))
    later = [np.array(load(input=value)["bottleneck"]) for value in sequence[3:]]
    np.testing.assert_array_equal(later, fresh[3:])
    signature("restore")(**saved)                            # back to after call 3
    again = [np.array(load(input=value)["bottleneck"]) for value in sequence[3:]]
    np.testing.assert_array_equal(again, later)
    signature("initialize")()                                # the stream starts over
    state = signature("save")()
    assert not state[RING].any() and not state[COUNT].any()
    np.testing.assert_array_equal([np.array(load(input=v)["bottleneck"]) for v in sequence], fresh)
    # Restore as the first call of an interpreter: the base's own CALL_ONCE must not undo it.
    other = interpreter(result.model_bytes).get_signature_runner
    other("restore")(**saved)
    np.testing.assert_array_equal([np.array(other("load")(input=v)["bottleneck"]) for v in sequence[3:]], later)


def test_summary_says_what_was_proven_and_how_images_run(stateful_compiled):
    result = stateful_compiled("int8")
    text = summary.format_summary(result, "model.tflite")
    assert "the base keeps state in 2 variable(s)" in text and "its own batch 1" in text
    assert "proof: `load` equals the original file's" in text and "its state carried from call to call" in text
    assert result.metadata.image_batch == 1 and result.signatures["load"][0][0].shape[0] == 1
    assert result.signatures["train"][0][0].shape[0] == -1


def test_images_run_at_the_base_own_batch(stateful_files, stateful_compiled):
    path, base = stateful_files("float")
    with pytest.raises(InvalidInputError, match=r"^--batch=2,4: .*keeps state between calls in variable\(s\) "
                                                r".*'ring_buffer'.*; use --batch=1,4$"):
        compile_model(path, base.features, num_classes=3, batch_options=batch.BatchOptions(2, 4))
    fixed = stateful_compiled("float", 1, 4)
    assert (fixed.metadata.image_batch, fixed.metadata.train_batch) == (1, 4)
    two = stateful_compiled("batch2")
    assert two.metadata.image_batch == 2 and two.signatures["load"][0][0].shape[0] == 2
    path2, base2 = stateful_files("batch2")
    with pytest.raises(InvalidInputError, match="use --batch=2,any$"):
        compile_model(path2, base2.features, num_classes=3, batch_options=batch.BatchOptions(1, None))
    sequence = frames(4, batch=2)
    for value, reference in zip(run_load(two.model_bytes, sequence), base2.reference(sequence)):
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("how,message", [
    ("batch_shaped", r"base variable 'ring_buffer' has shape \[-1, 4, 6\], which depends on the batch"),
    ("no_initial_value", r"base variable 'frame_count' is written on every call but gets no initial value"),
    ("variable_tensor", r"op FULLY_CONNECTED producing '.*' keeps state between calls in its variable tensor"),
])
def test_state_that_cannot_be_exact_is_refused(stateful_files, tmp_path, how, message):
    path, base = stateful_files("float")
    damaged = tmp_path / f"{how}.tflite"
    damaged.write_bytes(stateful_bases.crafted(base.tflite, how))
    with pytest.raises(UnsupportedModelError, match=message) as raised:
        compile_model(str(damaged), base.features, num_classes=3)
    assert "\n" not in str(raised.value)


def test_a_random_generator_in_the_base_is_refused(tmp_path):
    path = tmp_path / "random.tflite"
    path.write_bytes(stateful_bases.random_base())
    with pytest.raises(UnsupportedModelError, match="op RANDOM_UNIFORM .* keeps a random-generator state"):
        compile_model(str(path), num_classes=3)


def test_base_variables_named_like_head_variables_are_refused(stateful_files, tmp_path):
    path, base = stateful_files("float")
    model = model_io.read_model_bytes(base.tflite)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "VAR_HANDLE" \
                    and op.builtinOptions.sharedName == b"frame_count":
                op.builtinOptions.sharedName = b"step"      # the head's optimizer step
    clashing = tmp_path / "clash.tflite"
    clashing.write_bytes(model_io.write_model_bytes(model))
    with pytest.raises(InvalidInputError, match="conflicting variable names: .*step"):
        compile_model(str(clashing), base.features, num_classes=3)


def test_export_refuses_a_stateful_base(stateful_compiled):
    """Export bakes every READ_VARIABLE: the base's stream would be frozen at the checkpoint."""
    import dataclasses

    from tflite_transfer.compiler.export import inference_model
    from tflite_transfer.runtime.interpreter import read_metadata

    result = stateful_compiled("float")
    state = interpreter(result.model_bytes).get_signature_runner("save")()
    with pytest.raises(InvalidInputError, match=r"the base keeps state between calls \(base_state_.*\); an "
                                                "inference-only model would freeze it"):
        inference_model.export_inference_model(result.model_bytes, state, "stateful.tflite")
    # A record without the roles (a model from before them) is refused by its structure.
    metadata = read_metadata(result.model_bytes, "m")
    head_only = dataclasses.replace(metadata, state=tuple(e for e in metadata.state if e.role != contract.BASE_STATE))
    with pytest.raises(InvalidInputError, match=r"\(variables written in subgraph \d+\);"):
        inference_model.refuse_stateful_base(model_io.read_model_bytes(result.model_bytes), head_only, "m")


def test_a_cut_inside_a_stateful_base_is_proven_too(stateful_files):
    """Cut at the flattened ring buffer [1, 24], an intermediate tensor: the proof reads it from
    the original's unchanged bytes (builtin kernels) and from a copy that outputs it (XNNPACK)."""
    path, base = stateful_files("float")
    original = model_io.read_model(path)
    main = original.subgraphs[0]
    flattened = next(model_io.tensor_name(main.tensors[op.outputs[0]]) for op in main.operators
                     if model_io.operator_name(original.operatorCodes[op.opcodeIndex]) == "RESHAPE"
                     and list(main.tensors[op.outputs[0]].shape) == [1, 24])
    result = compile_model(path, flattened, num_classes=3)
    assert result.reproduction.stateful and result.reproduction.copied_for_xnnpack
    sequence = frames(5)
    found = run_load(result.model_bytes, sequence)
    expected_ring = np.zeros((1, 4, 6), np.float32)
    for value, frame in zip(found, sequence):
        expected_ring = np.concatenate([expected_ring[:, 1:], frame[:, None]], axis=1)
        np.testing.assert_array_equal(value, expected_ring.reshape(1, 24))   # the ring, exactly
