"""compiler/passes/metadata.py: the compiled model's metadata record, as the runtime reads it back."""

from __future__ import annotations

from tflite_transfer.runtime import contract
from tflite_transfer.runtime.interpreter import read_metadata


def test_state_roles_of_an_adam_mlp_head(small_fused):
    metadata = read_metadata(small_fused.model_bytes, "small")
    assert metadata.contract_version == contract.CONTRACT_VERSION
    assert contract.digest_matches(small_fused.model_bytes) is True
    assert metadata.state_names == tuple(small_fused.head.initial_state)
    kernels = metadata.entries_with_role(contract.KERNEL)
    biases = metadata.entries_with_role(contract.BIAS)
    assert [k.layer for k in kernels] == [b.layer for b in biases] == ["dense_0", "dense_1"]
    slots = metadata.entries_with_role(contract.SLOT)
    assert {(s.of, s.slot) for s in slots} == {(w.name, slot) for w in (*kernels, *biases) for slot in ("m", "v")}
    for entry in metadata.state:
        assert entry.shape == small_fused.head.initial_state[entry.name].shape
    assert metadata.label == contract.LabelSpec("class_ids", "int32", ())
    assert metadata.output == contract.PROBABILITIES


def test_the_record_written_is_the_record_returned(tiny_fused):
    written = read_metadata(tiny_fused.model_bytes, "tiny")
    assert written.model_digest != contract.DIGEST_PLACEHOLDER
    assert tiny_fused.metadata.model_digest == contract.DIGEST_PLACEHOLDER
    assert written.to_json().replace(written.model_digest, contract.DIGEST_PLACEHOLDER) == tiny_fused.metadata.to_json()


def test_state_entries_follow_the_contract_layout_or_are_refused(tiny_fused):
    import numpy as np
    import pytest

    from tflite_transfer.compiler.errors import VerificationError
    from tflite_transfer.compiler.passes import metadata

    head, state = tiny_fused.head.head, tiny_fused.head.initial_state
    entries = metadata.state_entries(head, state, ())
    assert entries == contract.state_layout(head.layer_shapes, ())
    reordered = dict(reversed(list(state.items())))
    with pytest.raises(VerificationError, match="state variable 0: the head made"):
        metadata.state_entries(head, reordered, ())
    with pytest.raises(VerificationError, match="expects"):
        metadata.state_entries(head, {**state, "extra": np.zeros(1, np.float32)}, ())
