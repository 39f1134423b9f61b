"""compiler/passes/metadata.py: the compiled model's metadata record, as the runtime reads it back."""

from __future__ import annotations

import pytest

from tests.helpers import compile_model
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.contract import ModelMetadata
from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.interpreter import read_metadata


def test_state_roles_of_an_adam_mlp_head(small_fused):
    metadata = read_metadata(small_fused.model_bytes, "small")
    assert metadata.contract_version == 2  # no option of version 3 used: the oldest version that says it all
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


def test_version_3_only_when_an_option_of_version_3_is_used(tiny_classifier_path, tiny_pool_name, tiny_fused):
    """The record is the oldest version that describes the model: runtimes released before
    version 3 keep opening models compiled without its options; names alone make it version 3."""
    renamed = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                            interface={"names": "output:scores,label:y"})
    default = read_metadata(tiny_fused.model_bytes, "tiny")
    metadata = read_metadata(renamed.model_bytes, "renamed")
    assert (default.contract_version, metadata.contract_version) == (2, 3)
    assert metadata.signatures[contract.INFER].outputs == ("scores",) and metadata.output == "scores"
    assert metadata.signatures[contract.TRAIN].inputs == ("bottleneck", "y")
    assert metadata.input == contract.InputSpec("image", "uint8", (16, 12, 3), (0.0, 255.0), (0.0, 255.0))
    # How the app calls the model is not what its state means: a checkpoint moves between them.
    assert metadata.fingerprint == default.fingerprint
    assert ModelMetadata.from_json(metadata.to_json()) == metadata


def test_pooling_adapters_give_models_of_different_identity(tiny_classifier_path, tiny_conv_name):
    mean, max_ = (read_metadata(compile_model(tiny_classifier_path, tiny_conv_name, num_classes=3,
                                              interface={"bottleneck_adapter": kind}).model_bytes, kind)
                  for kind in ("mean", "max"))
    assert mean.bottleneck_size == max_.bottleneck_size == 7
    assert mean.bottleneck_adapter == {"kind": "mean", "cut_shape": [14, 10, 7]}
    assert mean.fingerprint != max_.fingerprint  # same sizes, features of another meaning


def test_names_clashing_with_a_state_variable_are_refused(tiny_classifier_path, tiny_pool_name):
    with pytest.raises(InvalidInputError, match=r"--names: 'dense_0_bias' is also a state variable's name"):
        compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3,
                      interface={"names": "loss:dense_0_bias"})
