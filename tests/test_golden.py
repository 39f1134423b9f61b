"""tests/golden/: the contract's golden files (read by the C++ and web runtimes' tests) are
exactly what the contract module and the checkpoint writer make now, and read back; the Python
runtime follows every rule vectors.json states."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from tests.golden import generate
from tflite_transfer.runtime import TransferModel, checkpoint, contract, errors, inputs

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


@pytest.mark.parametrize("name", ["metadata_v3.json", "metadata_v3_tensor.json", "metadata_v3_stateful.json"])
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


# --- vectors.json: the Python runtime accepts exactly the accept vectors and refuses every
# refuse vector with its error class (the C++ and web runtimes test the same file).

VECTORS = json.loads((generate.GOLDEN_DIR / "vectors.json").read_text())


def test_no_stale_vector_files():
    assert generate.stale_vector_files(GENERATED) == [], "run python -m tests.golden.generate"


def _number(value):
    return float(value) if isinstance(value, str) else value  # "nan", "inf", "-inf"


def _outcome(call) -> str:
    try:
        call()
    except errors.TransferError as error:
        return type(error).__name__
    return "accepted"


def _expected(vector) -> str:
    return "accepted" if vector["accept"] else vector["error"]


@pytest.fixture(scope="module")
def golden_model():
    return TransferModel.open(generate.GOLDEN_DIR / VECTORS["model"]["file"])


def _state_sha256(state) -> dict:
    return {name: hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() for name, value in state.items()}


def test_the_limits_are_the_runtimes_constants():
    limits = VECTORS["limits"]
    assert (limits["training"]["max_learning_rate"], limits["training"]["max_step"]) == (
        inputs.MAX_LEARNING_RATE, inputs.MAX_STEP)
    assert limits["contract"]["signatures"] == list(contract.SIGNATURES)
    assert limits["contract"]["supported_contract_versions"] == list(contract.SUPPORTED_CONTRACT_VERSIONS)
    assert limits["checkpoint"]["format_version"] == checkpoint.FORMAT_VERSION
    assert limits["checkpoint"]["max_header_bytes"] == checkpoint.MAX_HEADER_BYTES


@pytest.mark.parametrize("vector", VECTORS["learning_rates"], ids=lambda v: v["why"])
def test_learning_rate_vectors(golden_model, vector):
    value = _number(vector["value"])
    before = golden_model.get_state()
    assert _outcome(lambda: golden_model.set_learning_rate(value)) == _expected(vector)
    after = golden_model.get_state()
    if vector["accept"]:
        assert after["learning_rate"][0] == np.float32(value)
        golden_model.set_state(before)
    else:
        assert _state_sha256(after) == _state_sha256(before)  # a refusal changes nothing


@pytest.mark.parametrize("vector", VECTORS["steps"], ids=lambda v: v["why"])
def test_step_vectors(golden_model, vector):
    golden_model.reset()
    state = dict(golden_model.get_state(), step=np.array([vector["value"]], np.int32))
    assert _outcome(lambda: golden_model.set_state(state)) == _expected(vector)


@pytest.mark.parametrize("vector", VECTORS["training_steps"], ids=lambda v: v["why"])
def test_training_step_vectors(golden_model, vector):
    golden_model.reset()
    golden_model.set_state(dict(golden_model.get_state(), step=np.array([vector["step"]], np.int32)))
    bottleneck = np.ones((1, golden_model.metadata.bottleneck_size), np.float32)
    assert _outcome(lambda: golden_model.train_bottlenecks(bottleneck, [0])) == _expected(vector)
    assert int(golden_model.get_state()["step"][0]) == vector["step"] + (1 if vector["accept"] else 0)


@pytest.mark.parametrize("vector", VECTORS["inputs"]["vectors"], ids=lambda v: v["name"])
def test_input_vectors(vector):
    context = VECTORS["inputs"]["contexts"][vector["context"]]
    value = np.array([_number(v) for v in vector["values"]], np.float64).astype(vector["dtype"])
    value = value.reshape(vector["shape"])
    label = contract.LabelSpec(context["label"]["kind"], context["label"]["dtype"], tuple(context["label"]["shape"]))
    check = {
        "image": lambda: inputs.model_input(value, "image", "image", tuple(context["image_shape"]),
                                            np.dtype(context["image_dtype"]), tuple(context["image_range"])),
        "label": lambda: inputs.labels(value, vector["batch"], label, context["num_outputs"]),
        "bottleneck": lambda: inputs.bottlenecks(value, context["bottleneck_size"]),
    }[vector["tensor"]]
    assert _outcome(check) == _expected(vector)


def test_the_real_model_and_its_digest():
    model = VECTORS["model"]
    data = (generate.GOLDEN_DIR / model["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == model["sha256"] and len(data) == model["bytes"]
    assert contract.find_digest(data) == (model["digest_offset"], model["model_digest"])
    assert contract.model_digest(data) == model["model_digest"]
    opened = TransferModel.open(generate.GOLDEN_DIR / model["file"])
    assert opened.metadata.fingerprint == model["fingerprint"]
    assert [list(map(str, (e.name, e.dtype, e.role))) + [list(e.shape)] for e in opened.metadata.state] == [
        [e["name"], e["dtype"], e["role"], e["shape"]] for e in model["state"]]
    assert (list(opened.image_shape), opened.image_dtype.name) == (model["image"]["shape"], model["image"]["dtype"])


@pytest.mark.parametrize("vector", VECTORS["model_files"], ids=lambda v: v["name"])
def test_damaged_model_vectors(vector):
    path = generate.GOLDEN_DIR / vector["file"]
    assert _outcome(lambda: TransferModel.open(path)) == _expected(vector)
    found = contract.find_digest(path.read_bytes())
    assert (None if found is None else found[0]) == vector["digest_offset"]
    assert contract.digest_matches(path.read_bytes()) == vector["stored_digest_matches"]


@pytest.mark.parametrize("vector", VECTORS["digest_strings"], ids=lambda v: v["name"])
def test_digest_string_vectors(vector):
    data = bytes.fromhex(vector["hex"])
    found = contract.find_digest(data)
    assert (None if found is None else found[0]) == vector["digest_offset"]
    if found is not None:
        assert contract.model_digest(data) == vector["zeroed_sha256"]
    assert contract.digest_matches(data) == vector["matches"]


@pytest.mark.parametrize("vector", VECTORS["checkpoints"], ids=lambda v: v["name"])
def test_checkpoint_vectors(golden_model, vector):
    golden_model.reset()
    before = _state_sha256(golden_model.get_state())
    path = generate.GOLDEN_DIR / vector["file"]
    outcome = _outcome(lambda: golden_model.restore_checkpoint(path, allow_version_1=vector["allow_version_1"]))
    assert outcome == _expected(vector)
    after = _state_sha256(golden_model.get_state())
    assert after == (vector["state_sha256"] if vector["accept"] else before)
