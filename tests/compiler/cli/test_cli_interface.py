"""compile-transfer's interface flags (--names, --input_range, --base_input_range, --label_format,
--bottleneck_adapter, --calibration_data) as a user runs them: the console script."""

from __future__ import annotations

import pytest

from test_cli_helpers import run_cli
from tests.fixtures import tensor_bases
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.interpreter import read_metadata


def test_the_example_app_recipe_on_a_uint8_base(tiny_classifier_path, tiny_conv_name, tmp_path):
    """A uint8 base needs no --base_input_range (its dtype bounds it): QUANTIZE takes the floats."""
    output = tmp_path / "app.tflite"
    process = run_cli(f"--base={tiny_classifier_path}", f"--base_output={tiny_conv_name}", "--names=tf_example_app",
                      "--input_range=0,1", "--label_format=one_hot", "--bottleneck_adapter=flatten",
                      "--num_classes=4", f"--output={output}")
    assert process.returncode == 0, process.stderr[-2000:]
    assert ("interface: contract version 3; input 'feature' (image): values [0, 1], scaled in the model to "
            "the base's [0, 255]; label 'label' one_hot; bottleneck: flatten of [14, 10, 7] -> 980 features"
            in process.stdout), process.stdout
    assert "feature [batch, 16, 12, 3] float32 -> output [batch, 4] float32" in process.stdout
    metadata = read_metadata(output.read_bytes(), "app")
    assert metadata.signatures[contract.TRAIN].inputs == ("bottleneck", "label")


@pytest.fixture()
def output(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous model")
    return path


def _assert_one_line_error(process, output, *phrases):
    assert process.returncode != 0 and "Traceback" not in process.stderr, process.stderr[-2000:]
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("compile-transfer: error: "), process.stderr
    for phrase in phrases:
        assert phrase in last, last
    assert output.read_bytes() == b"previous model"


def test_bad_names_are_one_line_before_anything_is_built(tiny_classifier_path, output):
    process = run_cli(f"--base={tiny_classifier_path}", "--names=input:feature,loss:feature", f"--output={output}")
    _assert_one_line_error(process, output, "--names: input and loss are both named 'feature' in 'train_images'")


def test_an_input_range_on_a_float_base_of_unknown_range(tmp_path, output):
    base = tmp_path / "tabular.tflite"
    base.write_bytes(tensor_bases.tabular_base())
    process = run_cli(f"--base={base}", "--input_range=0,1", f"--output={output}")
    _assert_one_line_error(process, output, "--input_range=0,1: the compiler does not know which values",
                           "--base_input_range=LO,HI")


def test_one_hot_with_mse_is_refused(tiny_classifier_path, output):
    process = run_cli(f"--base={tiny_classifier_path}", "--loss=mse", "--label_format=one_hot", f"--output={output}")
    _assert_one_line_error(process, output, "--label_format=one_hot applies to classification losses")
