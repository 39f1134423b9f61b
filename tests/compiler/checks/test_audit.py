"""The checks every fused model passes before it is written."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tensorflow as tf

from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.errors import VerificationError


def test_op_audit_rejects_a_real_flex_op():
    determinant = tf.function(lambda x: tf.linalg.det(tf.reshape(x, [-1, 2, 2]))).get_concrete_function(
        tf.TensorSpec([None, 4], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([determinant])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    model = model_io.read_model_bytes(converter.convert())
    with pytest.raises(VerificationError, match=r"op 'FlexMatrixDeterminant' .* not a TFLite builtin"):
        audit.audit_ops(model)


def test_op_audit_names_the_signature(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    custom = model_io.make_op_code(schema_custom(), 1)
    custom.customCode = b"FlexSave"
    model.operatorCodes.append(custom)
    save = model_io.signature_subgraph(model, "save")
    model.subgraphs[save].operators[-1].opcodeIndex = len(model.operatorCodes) - 1
    with pytest.raises(VerificationError, match=r"'FlexSave' in subgraph \d+ \(signature 'save'\)"):
        audit.audit_ops(model)


def schema_custom() -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.BuiltinOperator.CUSTOM


def test_op_audit_counts_ops_per_signature(tiny_fused):
    op_audit = audit.audit_ops(model_io.read_model_bytes(tiny_fused.model_bytes))
    # train_images runs train's ops plus the IF and the base it calls.
    assert op_audit.ops_per_signature["train_images"] > op_audit.ops_per_signature["train"]
    assert op_audit.op_types["IF"] == 3  # load, infer, train_images


def test_base_check_catches_one_changed_weight_byte(tiny_fused, tiny_classifier_path):
    original = model_io.read_model(tiny_classifier_path)
    fused = model_io.read_model_bytes(tiny_fused.model_bytes)
    base_subgraph = len(fused.subgraphs) - 1
    kept = tiny_fused.base_tensors_checked
    audit.check_base_preserved(original, 0, fused, base_subgraph, kept)
    tampered = copy.deepcopy(fused)
    weights = next(t for t in tampered.subgraphs[base_subgraph].tensors[:kept]
                   if model_io.buffer_bytes(tampered, t.buffer))
    data = tampered.buffers[weights.buffer].data
    data[0] = np.uint8((int(data[0]) + 1) % 256)
    with pytest.raises(VerificationError, match="differs from the original"):
        audit.check_base_preserved(original, 0, tampered, base_subgraph, kept)


def test_base_check_catches_a_changed_scale(tiny_fused, tiny_classifier_path):
    original = model_io.read_model(tiny_classifier_path)
    fused = model_io.read_model_bytes(tiny_fused.model_bytes)
    base_subgraph = len(fused.subgraphs) - 1
    tensor = next(t for t in fused.subgraphs[base_subgraph].tensors
                  if t.quantization is not None and t.quantization.scale is not None)
    tensor.quantization.scale = tensor.quantization.scale * 1.001
    with pytest.raises(VerificationError, match="differs from the original"):
        audit.check_base_preserved(original, 0, fused, base_subgraph, tiny_fused.base_tensors_checked)


def test_contract_check(tiny_fused):
    model = model_io.read_model_bytes(tiny_fused.model_bytes)
    expected = tiny_fused.metadata.signatures
    audit.check_contract(model, expected)
    missing = copy.deepcopy(model)
    missing.signatureDefs = [s for s in missing.signatureDefs if s.signatureKey != b"restore"]
    with pytest.raises(VerificationError, match="differ from the contract"):
        audit.check_contract(missing, expected)
    renamed = copy.deepcopy(model)
    next(s for s in renamed.signatureDefs if s.signatureKey == b"train").inputs[1].name = b"labels"
    with pytest.raises(VerificationError, match="signature 'train'"):
        audit.check_contract(renamed, expected)
