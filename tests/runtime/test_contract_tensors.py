"""runtime/contract_tensors.py (contract version 3, through runtime/contract.py): tensor names
per model, the input described, one-hot labels, bottleneck adapters; versions 1 and 2 still read."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.golden import generate
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.errors import UnsupportedModelError

V3 = generate.METADATA_V3


def test_a_version_3_record_round_trips_and_keeps_its_names():
    text = V3.to_json()
    assert "image_range" not in json.loads(text)  # replaced by input.range
    read = contract.ModelMetadata.from_json(text)
    assert read == V3 and read.to_json() == text
    assert read.signatures[contract.LOAD] == contract.SignatureSpec("load", ("feature",), ("bottleneck",))
    assert read.signatures[contract.INFER] == contract.SignatureSpec("infer", ("feature",), ("output",))
    assert read.signatures[contract.TRAIN_IMAGES].inputs == ("feature", "label")
    assert read.signatures[contract.SAVE].outputs == V3.state_names  # state names never change
    assert read.input_range == (0.0, 1.0) and read.label.one_hot


@pytest.mark.parametrize("name", ["metadata.json", "metadata_fixed_batch.json", "metadata_v1.json"])
def test_versions_1_and_2_read_with_the_fixed_names_and_their_pixel_range(name):
    metadata = contract.ModelMetadata.from_json((generate.GOLDEN_DIR / name).read_bytes(), name)
    assert metadata.contract_version in (1, 2) and metadata.names is None and metadata.input is None
    assert metadata.tensor_names == contract.TensorNames.fixed(metadata.output)
    assert metadata.signatures[contract.LOAD] == contract.SignatureSpec("load", ("image",), ("bottleneck",))
    assert metadata.input_range == metadata.image_range == (0.0, 255.0)
    assert "names" not in json.loads(metadata.to_json()) and "input" not in json.loads(metadata.to_json())


def _record(**changes) -> str:
    record = json.loads(V3.to_json())
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return json.dumps(record)


@pytest.mark.parametrize("changes, message", [
    ({"names": {"input": "feature", "output": "output"}}, "names must give exactly the roles"),
    ({"names": None}, "incomplete or malformed.*'names'"),
    ({"input": None}, "incomplete or malformed.*'input'"),
    ({"names": {"input": "label", "bottleneck": "bottleneck", "label": "label", "loss": "loss",
                "output": "output"}}, "input and label are both named 'label' in 'train_images'"),
    ({"names": {"input": "", "bottleneck": "bottleneck", "label": "label", "loss": "loss",
                "output": "output"}}, "input name '' is not a name"),
    ({"names": {"input": "feature", "bottleneck": "bottleneck", "label": "label", "loss": "step",
                "output": "output"}}, "'step' is also a state variable's name"),
    ({"output": "probabilities"}, "output 'probabilities' is not names.output 'output'"),
    ({"input": {"kind": "picture", "dtype": "float32", "shape": [16, 12, 3]}}, "input kind 'picture'"),
    ({"input": {"kind": "image", "dtype": "float32", "shape": [16, 0, 3]}}, r"input shape \[16, 0, 3\]"),
    ({"input": {"kind": "image", "dtype": "float32", "shape": [4], "range": [1, 0]}}, r"input range \[1.0, 0.0\]"),
    ({"bottleneck_adapter": {"kind": "flatten", "cut_shape": [2, 7, 1]}}, "for bottleneck_size 7"),
    ({"bottleneck_adapter": {"kind": "median", "cut_shape": [1, 7]}}, "'median'"),
    ({"label": {"kind": "soft", "dtype": "float32", "shape": [3]}}, "label kind 'soft'"),
])
def test_a_malformed_version_3_record_is_refused_in_one_line(changes, message):
    with pytest.raises(UnsupportedModelError, match=message) as refused:
        contract.ModelMetadata.from_json(_record(**changes), "m.tflite")
    assert "\n" not in str(refused.value) and str(refused.value).startswith("m.tflite: ")


def test_one_hot_labels_need_version_3():
    record = json.loads(generate.METADATA.to_json())
    record["label"] = {"kind": "one_hot", "dtype": "float32", "shape": [3]}
    with pytest.raises(UnsupportedModelError, match="one_hot labels before contract version 3"):
        contract.ModelMetadata.from_json(json.dumps(record))


def test_a_later_version_is_refused_with_what_this_runtime_reads():
    with pytest.raises(UnsupportedModelError, match="contract version 4; this runtime reads "
                                                    "'tflite-transfer' versions 1, 2, 3"):
        contract.ModelMetadata.from_json(_record(contract_version=4))


def test_the_oldest_version_that_describes_a_model():
    plain = dataclasses.replace(V3, names=contract.TensorNames(), output="probabilities",
                                label=contract.LabelSpec.for_loss(True, 3), bottleneck_adapter=None,
                                input=contract.InputSpec("image", "float32", (16, 12, 3), (0.0, 255.0), (0.0, 255.0)))
    as_2 = contract.oldest_version_describing(plain)
    assert as_2.contract_version == 2 and as_2.names is None and as_2.image_range == (0.0, 255.0)
    assert as_2.signatures == plain.signatures
    uint8 = dataclasses.replace(plain, input=dataclasses.replace(plain.input, dtype="uint8"))
    assert contract.oldest_version_describing(uint8).image_range is None  # as version 2 wrote it
    for needs_3 in (V3, dataclasses.replace(plain, names=contract.TensorNames(input="feature")),
                    dataclasses.replace(plain, label=contract.LabelSpec.for_loss(True, 3, "one_hot")),
                    dataclasses.replace(plain, input=dataclasses.replace(plain.input, range=(0.0, 1.0))),
                    dataclasses.replace(plain, input=contract.InputSpec("tensor", "float32", (3, 40))),
                    dataclasses.replace(plain, bottleneck_adapter={"kind": "mean", "cut_shape": [2, 7]})):
        assert contract.oldest_version_describing(needs_3).contract_version == 3


@pytest.mark.parametrize("shape, kind", [((224, 224, 3), "image"), ((28, 28, 1), "image"), ((8, 8, 4), "image"),
                                         ((28, 28), "tensor"), ((144000,), "tensor"), ((3, 40), "tensor"),
                                         ((3,), "tensor"), ((6, 6, 128), "tensor"), ((2, 8, 8, 3), "tensor")])
def test_input_kind(shape, kind):
    assert contract.input_kind(shape) == kind


def test_the_example_app_preset_names_every_role():
    preset = contract.TensorNames(**contract.NAME_PRESETS["tf_example_app"])
    assert preset == contract.TensorNames("feature", "bottleneck", "label", "loss", "output")
    assert contract.names_problems(preset, V3.state_names) == []
