"""compiler/export/tflite_metadata.py: the TFLite Metadata tables written by slot number, read
back with mediapipe's generated schema module (an independent reader), and read from it."""

from __future__ import annotations

import os

import pytest

from tflite_transfer.compiler.export import tflite_metadata


@pytest.fixture(scope="module")
def schema():
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated
    except ImportError:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("mediapipe is not installed (pip install mediapipe==1.2.2)")
    return metadata_schema_py_generated


def test_what_is_written_reads_back_in_the_generated_schema(schema):
    image = tflite_metadata.ImageInput("image", "an image", (127.5,), (127.5,), (-1.0, 1.0), tflite_metadata.GRAYSCALE)
    output = tflite_metadata.Output("probabilities", "scores", (0.0, 1.0), "labels.txt")
    data = tflite_metadata.build("a name", "a description", image, output)
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
    metadata = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(data, 0))
    assert (metadata.name, metadata.description, metadata.minParserVersion) == (b"a name", b"a description", b"1.0.0")
    (subgraph,) = metadata.subgraphMetadata
    (tensor,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert (tensor.name, tensor.description) == (b"image", b"an image")
    assert tensor.content.contentPropertiesType == schema.ContentProperties.ImageProperties
    assert tensor.content.contentProperties.colorSpace == schema.ColorSpaceType.GRAYSCALE
    (unit,) = tensor.processUnits
    assert unit.optionsType == schema.ProcessUnitOptions.NormalizationOptions
    assert (list(unit.options.mean), list(unit.options.std)) == ([127.5], [127.5])
    assert (list(tensor.stats.min), list(tensor.stats.max)) == ([-1.0], [1.0])
    assert scores.content.contentPropertiesType == schema.ContentProperties.FeatureProperties
    (labels,) = scores.associatedFiles
    assert (labels.name, labels.type) == (b"labels.txt", schema.AssociatedFileType.TENSOR_AXIS_LABELS)
    assert tflite_metadata.read_image_input(data) == image


def test_a_quantized_input_has_no_normalization_and_damage_is_a_value_error(schema):
    image = tflite_metadata.ImageInput("image", "uint8 pixels", value_range=(0.0, 255.0))
    data = tflite_metadata.build("n", "d", image, tflite_metadata.Output("predictions", "values"))
    tensor = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(data, 0)).subgraphMetadata[0]
    assert tensor.inputTensorMetadata[0].processUnits is None
    assert tensor.outputTensorMetadata[0].associatedFiles is None
    assert tflite_metadata.read_image_input(data).mean is None
    for damaged in (data[:12], b"\0\0\0\0M002" + data[8:], data[:8] + b"\xff" * (len(data) - 8)):
        with pytest.raises(ValueError):
            tflite_metadata.read_image_input(damaged)


@pytest.mark.parametrize("pixel_range, mean, std", [((0, 255), 0.0, 1.0), ((-1, 1), 127.5, 127.5), ((0, 1), 0.0, 255.0)])
def test_normalization_maps_pixels_onto_the_range(pixel_range, mean, std):
    assert tflite_metadata.normalization_for_range(*pixel_range) == pytest.approx((mean, std))
    assert (0 - mean) / std == pytest.approx(pixel_range[0]) and (255 - mean) / std == pytest.approx(pixel_range[1])


def test_any_single_byte_damage_reads_or_raises_value_error_quickly(schema):
    """A base's damaged metadata must give one error line at export, never a hang or a raw error."""
    image = tflite_metadata.ImageInput("image", "an image", (0.0,), (1.0,), (0.0, 255.0))
    data = tflite_metadata.build("n", "d", image, tflite_metadata.Output("p", "q", (0.0, 1.0), "labels.txt"))
    outcomes = {"read": 0, "refused": 0}
    for position in range(len(data)):
        for value in (0x00, 0x7F, 0xFF):
            damaged = data[:position] + bytes([value]) + data[position + 1:]
            try:
                tflite_metadata.read_image_input(damaged)
                outcomes["read"] += 1
            except ValueError:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["read"] > 0
