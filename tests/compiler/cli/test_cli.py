"""compile-transfer as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import os

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
                     "all TFLite builtins", "relative weight difference", "base tensors identical",
                     "labels: no labels", "optimizer adam (learning rate"):
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
    (["--optimizer=no_such_optimizer"], ["unknown --optimizer 'no_such_optimizer'"]),
    (["--learning_rate=-0.5"], ["--learning_rate must be > 0", "got -0.5"]),
    (["--base=/nonexistent/base.tflite"], ["'/nonexistent/base.tflite' not found"]),
])
def test_bad_flags(flags, phrases, output):
    assert_one_line_error(run_cli(*flags, f"--output={output}"), output, *phrases)


# Runs a console script with the arguments after it and, at exit, writes the TensorFlow and
# Keras modules the process imported to the file named by $IMPORTED_REPORT.
_IMPORT_REPORTING_WRAPPER = """
import atexit, json, os, runpy, sys
def report():
    with open(os.environ["IMPORTED_REPORT"], "w") as file:
        json.dump(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")), file)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("flag,phrase", [
    ("export", "export needs --model and --checkpoint"),
    ("--num_clases=5", "Unknown command line flag 'num_clases'. Did you mean: num_classes"),
    ("--head=mlp:abc", "--head=mlp:abc: expected hidden layer sizes"),
    ("--seed=-1", "--seed must be an integer in [0, 4294967295], got -1"),
    ("--optimizer=sgd --nesterov", "--nesterov applies to"),
])
def test_bad_flags_answer_before_tensorflow_is_imported(flag, phrase, tmp_path, output):
    """The installed console script refuses a typo or a bad value in one line without importing
    TensorFlow (which takes 10-28 s); figures of the time saved are in the helper's report, not here."""
    import json
    import subprocess
    import sys

    from test_cli_helpers import console_script

    script = console_script()
    assert script, "the compile-transfer console script is not installed (pip install -e .)"
    wrapper, report = tmp_path / "report_imports.py", tmp_path / "imported.json"
    wrapper.write_text(_IMPORT_REPORTING_WRAPPER)
    process = subprocess.run([sys.executable, str(wrapper), script, *flag.split(), f"--output={output}"],
                             capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=300, cwd=tmp_path,
                             env={**os.environ, "IMPORTED_REPORT": str(report)})
    assert_one_line_error(process, output, phrase)
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr
    assert json.loads(report.read_text()) == [], "TensorFlow/Keras imported before the flags were checked"


def test_the_import_report_sees_an_import(tmp_path):
    """The wrapper above is able to fail: a script importing (a stand-in) tensorflow is reported."""
    import json
    import subprocess
    import sys

    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text("")
    script, wrapper, report = tmp_path / "script.py", tmp_path / "report_imports.py", tmp_path / "imported.json"
    script.write_text("import tensorflow\n")
    wrapper.write_text(_IMPORT_REPORTING_WRAPPER)
    subprocess.run([sys.executable, str(wrapper), str(script)], check=True, timeout=120, cwd=tmp_path,
                   env={**os.environ, "IMPORTED_REPORT": str(report), "PYTHONPATH": str(tmp_path)})
    assert json.loads(report.read_text()) == ["tensorflow"]


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
