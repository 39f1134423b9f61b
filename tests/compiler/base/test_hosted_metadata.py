"""compiler/base/hosted_metadata.py: a hosted float base's NormalizationOptions say which values
it takes, so --input_range needs no --base_input_range. The metadata is written here with the
flatbuffers builder, field by field as tflite-support's metadata_schema.fbs lays them out
(ModelMetadata.subgraph_metadata = field 3, SubGraphMetadata.input_tensor_metadata = 2,
TensorMetadata.process_units = 4, ProcessUnit.options_type/options = 0/1, NormalizationOptions
mean/std = 0/1)."""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tests.helpers import compile_model
from tflite_transfer.compiler.base import hosted_metadata, sources
from tflite_transfer.compiler.flatbuffer import graph, model_io


def _floats(builder: flatbuffers.Builder, values) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(value)
    return builder.EndVector()


def _table(builder: flatbuffers.Builder, slots: int, fields: dict[int, int]) -> int:
    builder.StartObject(slots)
    for slot, offset in fields.items():
        builder.PrependUOffsetTRelativeSlot(slot, offset, 0)
    return builder.EndObject()


def _tables(builder: flatbuffers.Builder, offsets) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def normalization_metadata(mean, std) -> bytes:
    builder = flatbuffers.Builder(256)
    options = _table(builder, 2, {0: _floats(builder, mean), 1: _floats(builder, std)})
    builder.StartObject(2)
    builder.PrependUint8Slot(0, 1, 0)                       # options_type: NormalizationOptions
    builder.PrependUOffsetTRelativeSlot(1, options, 0)
    unit = builder.EndObject()
    tensor = _table(builder, 7, {4: _tables(builder, [unit])})
    subgraph = _table(builder, 9, {2: _tables(builder, [tensor])})
    name = builder.CreateString("a hosted classifier")
    root = _table(builder, 8, {0: name, 3: _tables(builder, [subgraph])})
    builder.Finish(root, file_identifier=b"M001")
    return bytes(builder.Output())


def _float_image_base() -> bytes:
    """A float base taking (pixel - 127.5) / 127.5: conv -> global average pool [b, 6]."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    image = keras.Input((12, 10, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, activation="relu")(image))
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(image, features)).convert()


@pytest.fixture(scope="module")
def hosted_base(tmp_path_factory) -> str:
    model = model_io.read_model_bytes(_float_image_base())
    graph.set_metadata(model, hosted_metadata.METADATA_NAME, normalization_metadata([127.5], [127.5]))
    path = tmp_path_factory.mktemp("hosted") / "hosted.tflite"
    path.write_bytes(model_io.write_model_bytes(model))
    return str(path)


def test_normalization_is_read_back():
    assert hosted_metadata.normalization(normalization_metadata([0.5, 1.5], [2.0, 4.0])) == ([0.5, 1.5], [2.0, 4.0])


def test_the_range_a_hosted_base_takes(hosted_base):
    base = sources.load_base(sources.BaseOptions(base=hosted_base), lambda m: None)
    assert base.image_range == (-1.0, 1.0)  # (0 - 127.5) / 127.5, (255 - 127.5) / 127.5


def test_per_channel_normalization_gives_no_single_range():
    model = model_io.read_model_bytes(_float_image_base())
    graph.set_metadata(model, hosted_metadata.METADATA_NAME, normalization_metadata([120.0, 117.0, 104.0], [58.0]))
    assert hosted_metadata.input_value_range(model, "per-channel") is None


def test_input_range_scales_to_what_the_metadata_says(hosted_base):
    """pixels / 255 in [0, 1] -> x * 2 - 1: the base sees what its metadata asks for."""
    result = compile_model(hosted_base, num_classes=3, interface={"input_range": "0,1"})
    assert result.metadata.input.base_range == (-1.0, 1.0)
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    reference = Interpreter(model_path=hosted_base, experimental_op_resolver_type=builtin)
    reference.allocate_tensors()
    load = Interpreter(model_content=result.model_bytes, experimental_op_resolver_type=builtin)
    pixels = np.random.default_rng(4).integers(0, 256, (1, 12, 10, 3)).astype(np.float32)
    app_values = pixels / np.float32(255)
    reference.set_tensor(reference.get_input_details()[0]["index"], app_values * np.float32(2) + np.float32(-1))
    reference.invoke()
    expected = reference.get_tensor(reference.get_output_details()[0]["index"])
    np.testing.assert_array_equal(load.get_signature_runner("load")(image=app_values)["bottleneck"], expected)
