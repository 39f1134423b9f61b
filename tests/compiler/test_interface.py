"""compiler/interface.py: the options that fit an existing app, checked before anything slow
(in a process that never imports TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.interface import check_interface_options, parse_names, parse_range
from tflite_transfer.compiler.options import InterfaceOptions
from tflite_transfer.runtime import contract


def check(**options):
    return check_interface_options(InterfaceOptions(**options), True, "softmax_cross_entropy")


def test_names_preset_then_pairs_and_the_defaults_by_input_kind():
    assert parse_names("tf_example_app") == contract.NAME_PRESETS["tf_example_app"]
    assert parse_names("tf_example_app, output:scores")["output"] == "scores"
    plan = check(names="input:feature,output:output")
    assert plan.tensor_names("image", "probabilities") == contract.TensorNames("feature", output="output")
    assert check().tensor_names("tensor", "predictions") == contract.TensorNames("input", output="predictions")
    assert check().tensor_names("image", "probabilities") == contract.TensorNames()
    assert parse_names({"label": "y"}) == {"label": "y"}


@pytest.mark.parametrize("options, message", [
    ({"names": "tf_app"}, "'tf_app' is neither a preset \\(tf_example_app\\) nor ROLE:NAME"),
    ({"names": "features:x"}, "unknown role 'features'.*roles are input, bottleneck, label, loss, output"),
    ({"names": "input:"}, "input name '' is not a name"),
    ({"names": "input:my image"}, "input name 'my image' is not a name"),
    ({"names": "loss:label"}, "label and loss are both named 'label' in 'train'"),
    ({"names": "bottleneck:image"}, "input and bottleneck are both named 'image' in 'load'"),
    ({"names": "output:learning_rate"}, "'learning_rate' is also a state variable's name"),
    ({"input_range": "0"}, "--input_range='0': expected LO,HI"),
    ({"input_range": "1,0"}, "expected finite LO < HI"),
    ({"base_input_range": "0,inf"}, "--base_input_range='0,inf': expected finite LO < HI"),
    ({"label_format": "onehot"}, "--label_format='onehot': choose one of class_ids, one_hot"),
    ({"bottleneck_adapter": "avg"}, "--bottleneck_adapter='avg': choose one of flatten, mean, max"),
    ({"calibration_data": "/nonexistent/inputs.npy"}, "--calibration_data '/nonexistent/inputs.npy'"),
])
def test_each_bad_option_is_one_line(options, message):
    with pytest.raises(InvalidInputError, match=message) as refused:
        check(**options)
    assert "\n" not in str(refused.value)


def test_one_hot_is_for_classification_losses():
    with pytest.raises(InvalidInputError, match="--label_format=one_hot applies to classification losses; "
                                                "--loss=mse already takes float targets"):
        check_interface_options(InterfaceOptions(label_format="one_hot"), False, "mse")


def test_calibration_data_must_be_a_npy_file(tmp_path):
    text = tmp_path / "inputs.txt"
    text.write_text("1 2 3")
    with pytest.raises(InvalidInputError, match="expected a .npy file"):
        check(calibration_data=str(text))
    array = tmp_path / "inputs.npy"
    np.save(array, np.zeros((2, 3), np.float32))
    assert check(calibration_data=str(array)).calibration_data == str(array)


def test_ranges():
    assert parse_range("0,1", "--x") == (0.0, 1.0) and parse_range((-1, 1), "--x") == (-1.0, 1.0)
    assert parse_range(None, "--x") is None and parse_range("", "--x") is None


def test_checked_without_tensorflow():
    code = ("import sys; from tflite_transfer.compiler import interface, options; "
            "interface.check_interface_options(options.InterfaceOptions(names='tf_example_app', "
            "input_range='0,1', label_format='one_hot', bottleneck_adapter='flatten'), True, 'x'); "
            "print('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
