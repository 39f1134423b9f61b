"""The C++ runtime against the contract's rules as data (tests/golden/vectors.json and
contract_v3.json): its named constants are generated from the golden limits, and every vector
run through the C++ code (runtime/cpp/test/golden_vectors_main.cc) ends as the vector says, with
the same error class as the Python runtime (tests/test_golden.py runs the same vectors there):
every version 3 metadata file derives what contract_v3.json lists, the one-hot label rows are
accepted or refused as its rules say, and a base's own state may hold -inf and NaN."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
VECTORS = json.loads((GOLDEN / "vectors.json").read_text(encoding="utf-8"))
CONTRACT_V3 = json.loads((GOLDEN / "contract_v3.json").read_text(encoding="utf-8"))


def test_contract_header_is_generated_from_the_golden_limits():
    result = subprocess.run([sys.executable, str(REPO / "runtime" / "cpp" / "generate_contract_h.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_no_contract_literal_is_restated_in_the_cpp_sources():
    """Signature names and bounds are spelled once, in contract.h (the demo's flags --restore and
    --initialize are flag names, not signatures)."""
    limits = VECTORS["limits"]
    names = [f'"{name}"' for name in limits["contract"]["signatures"]]
    bounds = [str(limits["training"]["max_step"]), str(limits["checkpoint"]["max_header_bytes"]), '"__metadata__"']
    found = []
    for path in sorted((REPO / "runtime" / "cpp" / "src").glob("*.cc")):
        text = path.read_text(encoding="utf-8")
        for literal in bounds + ([] if path.name == "demo_main.cc" else names):
            if literal in text:
                found.append((path.name, literal))
    assert found == []


@pytest.fixture(scope="module")
def cpp_outcomes(cpp_demo) -> dict:
    program = Path(cpp_demo).parent / "tflite_transfer_golden"
    result = subprocess.run([str(program), str(GOLDEN)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outcomes: dict = {}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        outcomes.setdefault(record["group"], {})[record["index"]] = record
    return outcomes


def expected(vector) -> str:
    return "accepted" if vector["accept"] else vector["error"]


GROUPS = {"learning_rates": VECTORS["learning_rates"], "steps": VECTORS["steps"],
          "training_steps": VECTORS["training_steps"], "inputs": VECTORS["inputs"]["vectors"],
          "model_files": VECTORS["model_files"], "checkpoints": VECTORS["checkpoints"]}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_cpp_follows_every_vector(cpp_outcomes, group):
    vectors = GROUPS[group]
    got = cpp_outcomes[group]
    assert sorted(got) == list(range(len(vectors)))
    wrong = [(vector.get("name") or vector.get("why"), expected(vector), got[index]["outcome"], got[index]["message"])
             for index, vector in enumerate(vectors) if got[index]["outcome"] != expected(vector)]
    assert wrong == [], f"{len(wrong)} of {len(vectors)} {group} vectors end otherwise in C++"


def test_refusals_change_nothing_and_acceptances_store_the_value(cpp_outcomes):
    for index, vector in enumerate(VECTORS["learning_rates"]):
        got = cpp_outcomes["learning_rates"][index]
        if vector["accept"]:
            assert np.float32(got["stored"]) == np.float32(float(vector["value"])), vector
        else:
            assert got["state_unchanged"], vector
    for index, vector in enumerate(VECTORS["training_steps"]):
        assert cpp_outcomes["training_steps"][index]["step_after"] == vector["step"] + int(vector["accept"])
    for index, vector in enumerate(VECTORS["checkpoints"]):
        got = cpp_outcomes["checkpoints"][index]
        if vector["accept"]:
            assert got["state_sha256"] == vector["state_sha256"], vector["name"]
        else:
            assert got["state_unchanged"], vector["name"]


def test_the_real_model_opens_with_the_golden_digest(cpp_outcomes):
    got, model = cpp_outcomes["model"][0], VECTORS["model"]
    assert got["outcome"] == "accepted" and got["digest_checked"] is True
    assert (got["digest_offset"], got["model_digest"], got["fingerprint"], got["image_dtype"]) == (
        model["digest_offset"], model["model_digest"], model["fingerprint"], model["image"]["dtype"])
    for index, vector in enumerate(VECTORS["model_files"]):
        assert cpp_outcomes["model_files"][index]["digest_offset"] == vector["digest_offset"], vector["name"]
    for index, vector in enumerate(VECTORS["digest_strings"]):
        got = cpp_outcomes["digest_strings"][index]
        assert (got["digest_offset"], got["zeroed_sha256"]) == (vector["digest_offset"], vector["zeroed_sha256"])


def test_dtype_codes_are_the_formats(cpp_outcomes):
    codes = VECTORS["limits"]["checkpoint"]["dtype_codes"]
    got = {record["code"]: {"numpy": record["numpy"], "bytes": record["bytes"]}
           for record in cpp_outcomes["dtype_codes"].values()}
    assert got == codes


def test_every_version_3_file_derives_what_contract_v3_json_lists(cpp_outcomes):
    files = CONTRACT_V3["files"]
    got = {record["file"]: record for record in cpp_outcomes["v3_files"].values()}
    assert sorted(got) == sorted(files)
    for name, facts in files.items():
        assert got[name]["outcome"] == "accepted", got[name]["message"]
        described = got[name]["described"]
        assert described["contract_version"] == facts["contract_version"] == 3, name
        assert described["names"] == facts["names"], name
        assert described["input"] == facts["input"], name
        assert described["bottleneck_adapter"] == facts["bottleneck_adapter"], name
        assert described["label"] == facts["label"], name
        assert described["state"] == facts["state"], name
        assert list(described["signatures"]) == facts["signature_order"], name
        assert described["signatures"] == facts["signatures"], name
        assert (described["image_batch"], described["train_batch"]) == (
            facts["fixed_batch"]["load"], facts["fixed_batch"]["train"]), name


def test_one_hot_rows_are_accepted_and_refused_as_the_rules_say(cpp_outcomes):
    rules = CONTRACT_V3["rules"]["one_hot_rows"]
    expected = [("accepted", "accepted")] * len(rules["accepted"]) + [
        (reason, "InvalidInputError") for reason in rules["refused"]]
    got = cpp_outcomes["one_hot_rows"]
    assert [(got[i]["reason"], got[i]["outcome"]) for i in range(len(got))] == expected
    refusals = [got[i]["message"] for i in range(len(got)) if got[i]["outcome"] != "accepted"]
    assert all(message.startswith("label: ") and "\n" not in message for message in refusals)
    assert len(set(refusals)) == len(rules["refused"])  # each problem its own line


def test_base_state_may_hold_minus_inf_and_nan_but_the_head_may_not(cpp_outcomes):
    stateful = [name for name, facts in CONTRACT_V3["files"].items()
                if any(entry["role"] == "base_state" for entry in facts["state"])]
    got = list(cpp_outcomes["base_state"].values())
    assert stateful and [record["file"] for record in got] == [name for name in stateful for _ in (0, 1)]
    for base, head in zip(got[::2], got[1::2]):
        assert base["changed"].startswith("base_state_") and base["outcome"] == "accepted", base["message"]
        assert head["outcome"] == "InvalidInputError" and "contains NaN or Inf" in head["message"]
