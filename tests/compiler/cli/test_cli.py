"""compile-transfer as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import keras
import pytest

from test_cli_helpers import run_cli
from tflite_transfer.compiler.flatbuffer import model_io


def assert_one_line_error(process, output, *phrases):
    assert process.returncode != 0
    assert "Traceback" not in process.stderr
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("compile-transfer: error: "), process.stderr
    for phrase in phrases:
        assert phrase in last, last
    assert process.stdout == ""
    assert not output.exists() or output.read_bytes() == b"previous model"
    assert not list(output.parent.glob(".*.tmp")), "a temporary file was left behind"


def test_compiles_and_prints_a_summary(tiny_classifier_path, tiny_pool_name, tmp_path):
    output = tmp_path / "fused.tflite"
    process = run_cli(f"--base={tiny_classifier_path}", f"--base_output={tiny_pool_name}",
                      "--num_classes=3", "--optimizer=adam", f"--output={output}")
    assert process.returncode == 0, process.stderr
    model = model_io.read_model(str(output))
    assert {s.signatureKey.decode() for s in model.signatureDefs} >= {"load", "infer", "train"}
    for expected in ("signatures", "train_images", "image [batch, 16, 12, 3] uint8",
                     "all TFLite builtins", "relative weight difference", "base tensors identical"):
        assert expected in process.stdout


@pytest.fixture()
def output(tmp_path):
    path = tmp_path / "out" / "model.tflite"
    path.parent.mkdir()
    path.write_bytes(b"previous model")
    return path


def test_not_a_tflite_file(tmp_path, output):
    junk = tmp_path / "photo.tflite"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert_one_line_error(run_cli(f"--base={junk}", f"--output={output}"), output,
                          "photo.tflite", "not a TFLite model")


def test_truncated_file(tiny_classifier_path, tmp_path, output):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(tiny_classifier_path, "rb").read()[:600])
    assert_one_line_error(run_cli(f"--base={truncated}", f"--output={output}"), output,
                          "truncated.tflite", "truncated or corrupt")


def test_missing_base_output_tensor(tiny_classifier_path, output):
    process = run_cli(f"--base={tiny_classifier_path}", "--base_output=global_pool", f"--output={output}")
    assert_one_line_error(process, output, "no tensor named 'global_pool'", "did you mean")


def test_a_spatial_cut_asks_for_an_adapter(tiny_classifier_path, tiny_conv_name, output):
    process = run_cli(f"--base={tiny_classifier_path}", f"--base_output={tiny_conv_name}",
                      f"--output={output}")
    assert_one_line_error(process, output, "[-1, 14, 10, 7] int8 is a spatial map; choose --bottleneck_adapter: "
                                           "flatten (980 features), mean (7 features), max (7 features)")


@pytest.mark.parametrize("flags,phrases", [
    (["--num_classes=1"], ["--num_classes must be >= 2, got 1"]),
    (["--optimizer=rmsprop"], ["unknown --optimizer 'rmsprop'"]),
    (["--learning_rate=-0.5"], ["--learning_rate must be > 0", "got -0.5"]),
    (["--base=/nonexistent/base.tflite"], ["'/nonexistent/base.tflite' not found"]),
])
def test_bad_flags(flags, phrases, output):
    assert_one_line_error(run_cli(*flags, f"--output={output}"), output, *phrases)


def test_conflicting_variable_names(tiny_classifier_path, tiny_pool_name, tmp_path, output):
    head = keras.Sequential([keras.Input((7,)), keras.layers.Dense(4, name="x-y"),
                             keras.layers.Dense(3, name="x_y")])
    head.save(tmp_path / "head.keras")
    process = run_cli(f"--base={tiny_classifier_path}", f"--base_output={tiny_pool_name}",
                      f"--head=keras:{tmp_path / 'head.keras'}", "--num_classes=3", f"--output={output}")
    assert_one_line_error(process, output, "conflicting variable names")


def test_help_reads_like_a_man_page_with_every_flag_and_registry_name():
    from tflite_transfer.compiler.head import optimizers

    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("compile-transfer: fuse a frozen base model")
    for flag in ("--base", "--base_output", "--head", "--loss", "--optimizer", "--batch", "--output", "--[no]verify"):
        assert f"  {flag}:" in result.stdout, flag
    for name in optimizers.OPTIMIZERS:
        assert name in result.stdout
