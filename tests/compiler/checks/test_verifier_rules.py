"""compiler/checks/verifier_rules.py: TFLite's flatbuffer verifier rules on the final bytes.
The same mutants run through the real C++ verifier in tests/cpp/test_cpp_verifier.py."""

from __future__ import annotations

import pytest

from tests.fixtures.verifier_mutants import MUTANTS, VALID_EDITS, mutant_bytes
from tflite_transfer.compiler.checks import verifier_rules
from tflite_transfer.compiler.errors import VerificationError
from tflite_transfer.compiler.flatbuffer import model_io


def test_compiled_models_and_their_base_pass(tiny_fused, tiny_classifier_path):
    report = verifier_rules.check_verifier_rules(tiny_fused.model_bytes)
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    assert report.subgraphs == len(model.subgraphs)
    assert report.operators == sum(len(s.operators) for s in model.subgraphs)
    # Every constant the verifier counts is a tensor on a buffer with data (empty ones too).
    assert report.constants == sum(1 for s in model.subgraphs for t in s.tensors if model_io.is_constant(model, t))
    verifier_rules.check_verifier_rules(open(tiny_classifier_path, "rb").read())


@pytest.mark.parametrize("name, edit", VALID_EDITS, ids=[m[0] for m in VALID_EDITS])
def test_what_the_verifier_accepts_passes(tiny_fused, name, edit):
    verifier_rules.check_verifier_rules(mutant_bytes(tiny_fused.model_bytes, edit))


@pytest.mark.parametrize("name, edit, message", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_what_the_verifier_refuses_is_refused_with_its_message(tiny_fused, name, edit, message):
    with pytest.raises(VerificationError) as refused:
        verifier_rules.check_verifier_rules(mutant_bytes(tiny_fused.model_bytes, edit), "m.tflite")
    text = str(refused.value)
    assert text.startswith("m.tflite: TFLite's flatbuffer verifier would refuse it: ") and message in text
    assert "\n" not in text


def test_the_old_defect_names_the_tensor_and_the_fix(tiny_fused):
    edit = next(m[1] for m in MUTANTS if m[0] == "empty constants on buffer 0")
    with pytest.raises(VerificationError, match=r"Input tensor \d+ to op \d+ \(RESHAPE\) is not produced "
                       r"\(subgraph \d+ 'train'\): tensor '.*' is on buffer 0 \(a constant"):
        verifier_rules.check_verifier_rules(mutant_bytes(tiny_fused.model_bytes, edit))


@pytest.mark.parametrize("data", [b"", b"TFL3", b"\0\0\0\0TFL2" + b"\0" * 32, b"\x04\0\0\0TFL3" + b"\xff" * 8],
                         ids=["empty", "short", "identifier", "garbage"])
def test_bytes_that_are_no_model_are_refused_in_one_line(data):
    with pytest.raises(VerificationError, match="Invalid flatbuffer format"):
        verifier_rules.check_verifier_rules(data)


def test_the_compiler_runs_the_rules_on_its_final_bytes():
    from tflite_transfer.compiler import pipeline

    names = [step.run.__name__ for step in pipeline.PASSES]
    assert names.index("serialize") < names.index("check_verifier_rules") < names.index("run_every_signature")
