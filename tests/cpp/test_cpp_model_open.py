"""Opening a model in the C++ runtime: the digest is checked before the TFLite library sees
the bytes (runtime/SPEC.md#model-digest), contract-version-2 and -3 metadata is read as the contract module reads it,
version 1 still opens; golden files (tests/golden/, contract.json and contract_v3.json) parse to
the same values in C++ as in Python."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tests.fixtures.cpp_runtime import assert_one_error_line, model_metadata, run_demo
from tflite_transfer.runtime import contract

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _range(value):
    return None if value is None else [float(v) for v in value]


def python_view(metadata: contract.ModelMetadata) -> dict:
    """What the C++ --check_model/--check_metadata print, built from the contract's record."""
    spec = metadata.input
    adapter = metadata.bottleneck_adapter
    return {
        "names": metadata.tensor_names.as_dict(),
        "input": None if spec is None else {"kind": spec.kind, "dtype": spec.dtype, "shape": list(spec.shape),
                                            "range": _range(spec.range), "base_range": _range(spec.base_range)},
        "bottleneck_adapter": None if adapter is None else {"kind": adapter["kind"], "cut_shape": list(adapter["cut_shape"])},
        "bottleneck_max_norm2": metadata.bottleneck_max_norm2, "image_range": _range(metadata.image_range),
        "optimizer": {"name": str(metadata.optimizer.get("name") or ""),
                      "momentum": float(metadata.optimizer.get("momentum") or 0.0)},
        "bottleneck_size": metadata.bottleneck_size, "contract_version": metadata.contract_version,
        "fingerprint": metadata.fingerprint, "image_batch": metadata.image_batch,
        "label": {"dtype": metadata.label.dtype, "kind": metadata.label.kind, "shape": list(metadata.label.shape)},
        "labels": list(metadata.labels), "loss": metadata.loss, "model_digest": metadata.model_digest,
        "num_outputs": metadata.num_outputs, "output": metadata.output,
        "signatures": {name: {"inputs": list(spec.inputs), "outputs": list(spec.outputs)}
                       for name, spec in metadata.signatures.items()},
        "state": [{key: value for key, value in (("dtype", e.dtype), ("layer", e.layer), ("name", e.name),
                                                   ("of", e.of), ("role", e.role), ("shape", list(e.shape)),
                                                   ("slot", e.slot)) if value is not None}
                  for e in metadata.state],
        "train_batch": metadata.train_batch,
    }


def check_model(demo, path, *flags, expect_ok=True):
    return run_demo(demo, "--check_model", "--model", path, *flags, expect_ok=expect_ok)


def test_a_version_2_model_opens_with_its_digest_checked(cpp_demo, tiny_v2_model_path):
    described = json.loads(check_model(cpp_demo, tiny_v2_model_path).stdout)
    assert described.pop("digest_checked") is True
    assert described.pop("model_input") == {"kind": "image", "dtype": "uint8", "shape": [16, 12, 3], "range": None,
                                            "base_range": None}
    data = Path(tiny_v2_model_path).read_bytes()
    assert described == python_view(model_metadata(data))
    assert contract.digest_matches(data) is True
    assert "digest ok" in run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", 0).stdout


def test_damaged_models_are_refused_before_tflite_sees_them(cpp_demo, tiny_v2_model_path, tmp_path):
    data = bytearray(Path(tiny_v2_model_path).read_bytes())
    offset, digest = contract.find_digest(bytes(data))
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x10
    (tmp_path / "flipped.tflite").write_bytes(flipped)
    assert_one_error_line(check_model(cpp_demo, tmp_path / "flipped.tflite", expect_ok=False),
                          "is damaged: its model_digest does not match its content", "copy or compile it again")
    # Skipping the check hands the bytes to TFLite as they are (for files verified elsewhere).
    skipped = check_model(cpp_demo, tmp_path / "flipped.tflite", "--skip_digest_check", expect_ok=False)
    assert skipped.returncode in (0, 1) and "digest" not in skipped.stderr
    if skipped.returncode == 0:
        assert json.loads(skipped.stdout)["digest_checked"] is False

    no_digest = bytes(data).replace(b'"model_digest":"', b'"model_digesT":"')
    (tmp_path / "no_digest.tflite").write_bytes(no_digest)
    assert_one_error_line(check_model(cpp_demo, tmp_path / "no_digest.tflite", expect_ok=False), "no model_digest")
    twice = bytes(data) + b'"model_digest":"' + digest.encode() + b'"'  # two candidates: refused, not guessed
    (tmp_path / "twice.tflite").write_bytes(twice)
    assert_one_error_line(check_model(cpp_demo, tmp_path / "twice.tflite", expect_ok=False),
                          "must carry exactly one model_digest field", "--skip_digest_check")
    wrong = bytes(data[:offset]) + b"f" * 64 + bytes(data[offset + 64:])
    (tmp_path / "wrong.tflite").write_bytes(wrong)
    assert_one_error_line(check_model(cpp_demo, tmp_path / "wrong.tflite", expect_ok=False), "is damaged")
    assert_one_error_line(check_model(cpp_demo, tmp_path / "absent.tflite", expect_ok=False), "does not exist")


def test_a_version_1_model_still_opens_without_a_digest(cpp_demo, tiny_fused, tmp_path):
    from tests.fixtures.cpp_runtime import rewrite_model  # noqa: F401  (same flatbuffer helpers)
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tiny_fused.model_bytes))
    entry = next(m for m in model.metadata if m.name.decode() == contract.METADATA_KEY)
    record = json.loads(bytes(model.buffers[entry.buffer].data))
    if record["contract_version"] != 1:  # the compiler writes version 2: rebuild what version 1 wrote
        metadata = contract.ModelMetadata.from_json(json.dumps(record))
        record = json.loads(metadata.to_json())
        record["state"] = {e.name: {"shape": list(e.shape), "dtype": e.dtype} for e in metadata.state}
        for key in ("label", "model_digest", "image_batch", "train_batch"):
            record.pop(key, None)
        record["contract_version"] = 1
    model.buffers[entry.buffer].data = np.frombuffer(json.dumps(record).encode(), np.uint8)
    path = tmp_path / "v1.tflite"
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    described = json.loads(check_model(cpp_demo, path).stdout)
    assert described["digest_checked"] is False and described["contract_version"] == 1
    expected = python_view(contract.ModelMetadata.from_json(json.dumps(record)))
    assert {k: described[k] for k in expected} == expected  # roles derived as the contract derives them


def test_golden_metadata_parses_to_the_contract_modules_values(cpp_demo):
    """tests/golden/ (python -m tests.golden.generate): every metadata file parses in C++ to the
    contract module's record, and to the facts contract.json (versions 1, 2) and
    contract_v3.json (version 3: names, input, adapter, base_state roles) say a reader must derive."""
    derived = json.loads((GOLDEN / "contract.json").read_text(encoding="utf-8"))
    derived_v3 = json.loads((GOLDEN / "contract_v3.json").read_text(encoding="utf-8"))["files"]
    assert set(derived) & set(derived_v3) == set() and len(derived_v3) >= 3
    derived.update(derived_v3)
    roles = set()
    for name in sorted(derived):
        described = json.loads(run_demo(cpp_demo, "--check_metadata", GOLDEN / name).stdout)
        record = contract.ModelMetadata.from_json((GOLDEN / name).read_text(encoding="utf-8"))
        assert described == python_view(record), name
        facts = derived[name]
        assert described["signatures"] == facts["signatures"], name
        assert described["state"] == [{k: (list(v) if k == "shape" else v) for k, v in e.items()}
                                      for e in facts["state"]], name
        assert described["label"] == {**facts["label"], "shape": list(facts["label"]["shape"])}, name
        assert described["contract_version"] == facts["contract_version"], name
        assert (described["image_batch"], described["train_batch"]) == (
            facts["fixed_batch"]["load"], facts["fixed_batch"]["train"]), name
        if facts["contract_version"] >= 3:
            assert described["names"] == facts["names"], name
            assert described["input"] == facts["input"], name
            assert described["bottleneck_adapter"] == facts["bottleneck_adapter"], name
        roles |= {e["role"] for e in described["state"]}
    assert roles == set(contract.ROLES)  # base_state included (metadata_v3_stateful.json)


def test_version_3_records_that_break_the_rules_are_refused_in_one_line(cpp_demo, tmp_path):
    """What a reader of version 3 checks (BUILD.md): names, output, input, adapter, one-hot labels
    only in version 3; each refusal one UnsupportedModelError line naming the problem."""
    record = json.loads((GOLDEN / "metadata_v3.json").read_text(encoding="utf-8"))
    cases = [({"names": {**record["names"], "output": "feature"}}, "input and output are both named 'feature' in 'infer'"),
             ({"names": {**record["names"], "loss": "1loss"}}, "loss name '1loss' is not a name"),
             ({"names": {**record["names"], "label": "step"}}, "'step' is also a state variable's name"),
             ({"output": "probabilities"}, "output 'probabilities' is not names.output 'output'"),
             ({"input": {**record["input"], "kind": "audio"}}, "input kind 'audio'"),
             ({"input": {**record["input"], "range": [1, 0]}}, "input range [1, 0]"),
             ({"input": {**record["input"], "shape": [16, 0, 3]}}, "input shape [16, 0, 3]"),
             ({"bottleneck_adapter": {"kind": "flatten", "cut_shape": [1, 8, 1]}}, "for bottleneck_size 7"),
             ({"bottleneck_adapter": {"kind": "mean", "cut_shape": [1, 7, 1]}}, "bottleneck_adapter 'mean'"),
             ({"contract_version": 2}, "one_hot labels before contract version 3"),
             ({"names": {k: v for k, v in record["names"].items() if k != "loss"}}, "'names' must give exactly the roles"),
             ({"input": None}, "'input' is not an object"),
             ({"contract_version": 4}, "versions 1, 2, 3")]
    for change, fragment in cases:
        path = tmp_path / "record.json"
        path.write_text(json.dumps({**record, **change}), encoding="utf-8")
        with_python = None
        try:
            contract.ModelMetadata.from_json(path.read_text(encoding="utf-8"))
        except Exception as error:  # noqa: BLE001 (the class is compared below)
            with_python = type(error).__name__
        assert with_python == "UnsupportedModelError", change  # the contract module refuses it too
        assert_one_error_line(run_demo(cpp_demo, "--check_metadata", path, expect_ok=False), fragment)
    # The optional bottleneck_max_norm2 and the optimizer's momentum are read (golden: stateful).
    described = json.loads(run_demo(cpp_demo, "--check_metadata", GOLDEN / "metadata_v3_stateful.json").stdout)
    record = json.loads((GOLDEN / "metadata_v3_stateful.json").read_text(encoding="utf-8"))
    assert described["bottleneck_max_norm2"] == record["bottleneck_max_norm2"]
    assert described["optimizer"] == {"name": record["optimizer"]["name"], "momentum": record["optimizer"]["momentum"]}


def test_golden_checkpoint_parses_to_the_generators_values(cpp_demo):
    from tests.golden import generate

    path = GOLDEN / "checkpoint.ckpt"
    # The golden checkpoint is version 2 once runtime/checkpoint.py writes version 2; read a
    # version 1 file as the format allows it, on request.
    result = run_demo(cpp_demo, "--check_checkpoint", path, expect_ok=False)
    if result.returncode != 0:
        assert "format version 1" in result.stderr
        result = run_demo(cpp_demo, "--check_checkpoint", path, "--allow_version_1")
    described = json.loads(result.stdout)
    assert described["model_fingerprint"] == generate.FINGERPRINT == generate.METADATA.fingerprint
    assert described["metadata"]["num_samples_cached"] == "24"
    assert sorted(described["tensors"]) == sorted(generate.STATE) == sorted(generate.METADATA.state_names)
    for entry in generate.METADATA.state:
        tensor = described["tensors"][entry.name]
        assert (tensor["dtype"], tensor["shape"]) == (entry.dtype, list(entry.shape))
        assert tensor["sha256"] == hashlib.sha256(generate.STATE[entry.name].tobytes()).hexdigest()
