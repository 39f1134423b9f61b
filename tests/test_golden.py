"""tests/golden/: the contract's golden files (read by the C++ and web runtimes' tests) are
exactly what the contract module and the checkpoint writer make now, and read back."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.golden import generate
from tflite_transfer.runtime import checkpoint, contract

GENERATED = generate.golden_files()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_golden_file_is_what_the_code_makes_now(name):
    path = generate.GOLDEN_DIR / name
    assert path.is_file() and path.read_bytes() == GENERATED[name], (
        f"tests/golden/{name} is stale: run python -m tests.golden.generate and review the diff")


@pytest.mark.parametrize("name", ["metadata.json", "metadata_fixed_batch.json", "metadata_v1.json"])
def test_golden_metadata_reads_back_as_contract_json_says(name):
    text = (generate.GOLDEN_DIR / name).read_bytes()
    metadata = contract.ModelMetadata.from_json(text, name)
    derived = json.loads((generate.GOLDEN_DIR / "contract.json").read_text())[name]
    assert {k: list(v.inputs) + ["->"] + list(v.outputs) for k, v in metadata.signatures.items()} == {
        k: v["inputs"] + ["->"] + v["outputs"] for k, v in derived["signatures"].items()}
    assert [e.name for e in metadata.state] == [e["name"] for e in derived["state"]]
    assert {s: metadata.fixed_batch(s) for s in contract.SIGNATURES} == derived["fixed_batch"]
    if metadata.contract_version == 2:
        assert metadata.to_json().encode() + b"\n" == text


@pytest.mark.parametrize("name", ["metadata_v3.json", "metadata_v3_tensor.json"])
def test_golden_v3_metadata_reads_back_as_contract_v3_json_says(name):
    text = (generate.GOLDEN_DIR / name).read_bytes()
    metadata = contract.ModelMetadata.from_json(text, name)
    derived = json.loads((generate.GOLDEN_DIR / "contract_v3.json").read_text())["files"][name]
    assert metadata.contract_version == derived["contract_version"] == 3
    assert {k: {"inputs": list(v.inputs), "outputs": list(v.outputs)} for k, v in metadata.signatures.items()} \
        == derived["signatures"]
    assert metadata.tensor_names.as_dict() == derived["names"]
    assert metadata.signatures[contract.LOAD].inputs == (derived["names"]["input"],)
    assert json.loads(json.dumps(dataclasses.asdict(metadata.input))) == derived["input"]
    assert metadata.bottleneck_adapter == derived["bottleneck_adapter"]
    assert metadata.to_json().encode() + b"\n" == text


def test_golden_one_hot_rows_are_accepted_or_refused_as_the_rules_say():
    """The rules as data (contract_v3.json): the Python runtime's label check against them; the
    C++ and web runtimes are to run the same vectors."""
    from tflite_transfer.runtime import inputs
    from tflite_transfer.runtime.errors import InvalidInputError

    rules = json.loads((generate.GOLDEN_DIR / "contract_v3.json").read_text())["rules"]
    assert rules["one_hot_sum_tolerance"] == contract.ONE_HOT_SUM_TOLERANCE
    spec = contract.LabelSpec.for_loss(True, 3, "one_hot")
    for rows in rules["one_hot_rows"]["accepted"]:
        np.testing.assert_array_equal(inputs.labels(rows, 2, spec, 3), np.asarray(rows, np.float32))
    messages = set()
    for reason, rows in rules["one_hot_rows"]["refused"].items():
        with pytest.raises(InvalidInputError) as refused:
            inputs.labels(rows, 2, spec, 3)
        assert "\n" not in str(refused.value) and str(refused.value).startswith("label: "), reason
        messages.add(str(refused.value))
    assert len(messages) == len(rules["one_hot_rows"]["refused"])  # each problem its own line


def test_version_1_metadata_upgrades_to_the_same_roles():
    derived = json.loads((generate.GOLDEN_DIR / "contract.json").read_text())
    by_name = lambda entries: sorted(entries, key=lambda e: e["name"])  # noqa: E731 (v1 stored a dict)
    assert by_name(derived["metadata_v1.json"]["state"]) == by_name(derived["metadata.json"]["state"])
    assert derived["metadata_v1.json"]["label"] == derived["metadata.json"]["label"]


def test_golden_checkpoint_restores_the_golden_state():
    saved = checkpoint.read_checkpoint(generate.GOLDEN_DIR / "checkpoint.ckpt")
    metadata = contract.ModelMetadata.from_json((generate.GOLDEN_DIR / "metadata.json").read_bytes())
    checkpoint.check_compatible(saved, {e.name: (e.shape, e.numpy_dtype) for e in metadata.state},
                                metadata.fingerprint, "checkpoint.ckpt")
    assert sorted(saved.tensors) == sorted(generate.STATE)
    for name, value in generate.STATE.items():
        np.testing.assert_array_equal(saved.tensors[name], value)
        assert saved.tensors[name].dtype == value.dtype
