"""compiler/checks/validate.py: the final bytes are opened as the runtime opens them and every
signature runs at batch 1 and 3; a model that only breaks when run is refused."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.checks import validate
from tflite_transfer.compiler.errors import VerificationError
from tflite_transfer.runtime import contract


def test_every_signature_runs_at_batch_1_and_3(tiny_fused):
    report = validate.validate_model_bytes(tiny_fused.model_bytes)
    assert set(report.runs) >= {(s, b) for s in (contract.LOAD, contract.INFER, contract.TRAIN,
                                                 contract.TRAIN_IMAGES) for b in (1, 3)}
    assert {s for s, _ in report.runs} == set(contract.SIGNATURES)
    assert tiny_fused.validation.runs == report.runs  # the compile ran it on its final bytes


def test_a_changed_byte_is_refused_by_the_digest(tiny_fused):
    changed = bytearray(tiny_fused.model_bytes)
    changed[len(changed) // 2] ^= 0x01
    with pytest.raises(VerificationError, match="model_digest does not match"):
        validate.validate_model_bytes(bytes(changed))


def test_a_batch_1_reshape_is_caught_at_batch_3(tiny_fused):
    """The adapter's RESHAPE with a constant [1, features] target passes every audit and runs
    at batch 1; only running batch 3 shows it."""
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    features = tiny_fused.metadata.bottleneck_size
    base = model.subgraphs[model_io.called_subgraphs(
        model.subgraphs[model_io.signature_subgraph(model, contract.LOAD)].operators[0])[0]]
    reshape = next(op for op in base.operators
                   if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "RESHAPE")
    shape_tensor = base.tensors[reshape.inputs[1]]
    model.buffers[shape_tensor.buffer] = model_io.make_buffer(np.array([1, features], np.int32).tobytes())
    reshape.builtinOptions.newShape = [1, features]
    broken = contract.stamp_digest(model_io.write_model_bytes(model))
    with pytest.raises(VerificationError, match="'(load|infer)' fails at batch 3"):
        validate.validate_model_bytes(broken)


def test_every_contract_signature_has_a_row():
    validate.check_rows_cover_the_contract()
    assert set(validate.ROWS) == set(contract.SIGNATURES)


def test_a_contract_signature_without_a_row_fails_the_compile_check(tiny_fused, monkeypatch):
    """A signature added to the contract but not to the table would silently never run: refused."""
    monkeypatch.setattr(contract, "SIGNATURES", (*contract.SIGNATURES, "calibrate"))
    with pytest.raises(VerificationError, match=r"no row for the contract's signature\(s\) \['calibrate'\]"):
        validate.validate_model_bytes(tiny_fused.model_bytes)
    monkeypatch.setattr(contract, "SIGNATURES", tuple(s for s in contract.SIGNATURES if s not in ("calibrate", "save")))
    with pytest.raises(VerificationError, match=r"rows for signature\(s\) \['save'\] the contract does not define"):
        validate.check_rows_cover_the_contract()


def test_a_wrong_output_shape_is_refused(tiny_fused, monkeypatch):
    """The rows' output checks are able to fail: a row expecting another shape refuses the model."""
    row = validate.ROWS[contract.INFER]
    wrong = validate.SignatureRow(row.inputs, lambda run, batch: {run.metadata.output: (batch, 99)}, row.batched)
    monkeypatch.setitem(validate.ROWS, contract.INFER, wrong)
    with pytest.raises(VerificationError, match=r"'infer' at batch 1 returned 'probabilities' float32 \[1, 3\], "
                                                r"expected \[1, 99\]"):
        validate.validate_model_bytes(tiny_fused.model_bytes)
