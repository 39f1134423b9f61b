"""Reading and writing FlatBuffers: bad files, old op codes, buffer alignment."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from tensorflow.lite.python import schema_py_generated as schema

from tests.helpers import compile_model, interpreter, random_images
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.errors import InvalidInputError


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_text("hello, this is not a model")
    with pytest.raises(InvalidInputError, match=r"notes.tflite: not a TFLite model"):
        model_io.read_model(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        model_io.read_model(str(tmp_path / "absent.tflite"))


@settings(max_examples=40, deadline=None)
@given(fraction=st.floats(min_value=0.0, max_value=0.98))
def test_truncated_file_is_refused(tiny_classifier_path, fraction):
    data = open(tiny_classifier_path, "rb").read()
    cut = max(8, int(len(data) * fraction))
    with pytest.raises(InvalidInputError, match=r"truncated or corrupt|not a TFLite model"):
        model_io.read_model_bytes(data[:cut], "base.tflite")


def _buffer_data_offsets(data: bytes) -> list[int]:
    root = schema.Model.GetRootAs(data, 0)
    offsets = []
    for i in range(root.BuffersLength()):
        table = root.Buffers(i)._tab
        field = table.Offset(4)  # Buffer.data
        if field and table.VectorLen(field):
            offsets.append(table.Vector(field))
    return offsets


def test_written_buffers_are_16_byte_aligned(tiny_fused):
    offsets = _buffer_data_offsets(tiny_fused.model_bytes)
    assert len(offsets) > 5
    assert [o % 16 for o in offsets] == [0] * len(offsets)


def test_old_style_op_codes_are_read(tiny_classifier_path, tiny_pool_name, tmp_path):
    """Files from before TF 2.3 carry only deprecated_builtin_code (builtin_code 0)."""
    model = model_io.read_model(tiny_classifier_path)
    for op_code in model.operatorCodes:
        op_code.deprecatedBuiltinCode = model_io.builtin_code(op_code)
        op_code.builtinCode = 0
    old_path = tmp_path / "old_opcodes.tflite"
    old_path.write_bytes(model_io.write_model_bytes(model))
    result = compile_model(str(old_path), tiny_pool_name, num_classes=3)
    fused = interpreter(result.model_bytes)
    detail = fused.get_signature_runner("load").get_input_details()["image"]
    images = random_images(detail["shape_signature"][1:], detail["dtype"], 2, seed=1)
    reference = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3)
    np.testing.assert_array_equal(
        fused.get_signature_runner("load")(image=images)["bottleneck"],
        interpreter(reference.model_bytes).get_signature_runner("load")(image=images)["bottleneck"])


def test_remap_subgraph_indices_covers_every_control_flow_option():
    op = schema.OperatorT()
    op.builtinOptions = schema.IfOptionsT()
    op.builtinOptions.thenSubgraphIndex, op.builtinOptions.elseSubgraphIndex = 1, 2
    model_io.remap_subgraph_indices(op, {1: 7, 2: 8})
    assert (op.builtinOptions.thenSubgraphIndex, op.builtinOptions.elseSubgraphIndex) == (7, 8)
    call_once = schema.OperatorT()
    call_once.builtinOptions = schema.CallOnceOptionsT()
    call_once.builtinOptions.initSubgraphIndex = 3
    model_io.remap_subgraph_indices(call_once, {3: 0})
    assert call_once.builtinOptions.initSubgraphIndex == 0


def test_associated_files_survive_fusion_and_export(tiny_classifier_path, tiny_pool_name, tmp_path):
    """tflite-support packs label files as a zip after the FlatBuffer; a rewrite must keep it.
    The export writes its own labels.txt instead: the base's files describe the base's own
    outputs, which the exported model does not have."""
    import zipfile

    from tflite_transfer.compiler.export import inference_model

    data = open(tiny_classifier_path, "rb").read()
    with_labels = model_io.append_associated_files(data, {"labels.txt": b"cat\ndog\nfox\n"})
    assert model_io.associated_files(data) == {}
    path = tmp_path / "with_labels.tflite"
    path.write_bytes(with_labels)
    fused = compile_model(str(path), tiny_pool_name, num_classes=3)
    assert zipfile.ZipFile(__import__("io").BytesIO(fused.model_bytes)).read("labels.txt") == b"cat\ndog\nfox\n"
    runner = interpreter(fused.model_bytes)  # the appended zip does not disturb the interpreter
    assert "train" in runner.get_signature_list()
    exported = inference_model.export_inference_model(fused.model_bytes, fused.head.initial_state)
    assert model_io.associated_files(exported) == {"labels.txt": b"0\n1\n2\n"}   # the head's classes
