"""Standard TFLite Metadata (the `TFLITE_METADATA` entry task libraries read), written and read
with the `flatbuffers` Builder/Table directly.

Why by hand: the schema's generated Python module ships with tflite-support (which pins
protobuf 3.20, impossible next to TensorFlow 2.21) and with mediapipe (a test dependency, not
the compiler's); neither tensorflow nor ai-edge-litert ships it. We need a handful of tables,
so their fields are written here by slot number, as metadata_schema.fbs (schema 1.5.0,
file_identifier "M001"; e.g. mediapipe/tasks/metadata/metadata_schema.fbs) declares them. A
field's slot is its position in the table; a union takes two slots (type, then value). The
tests read what is written back with mediapipe's generated module, an independent reader.

    ModelMetadata        0 name  1 description  2 version  3 subgraph_metadata  4 author
                         5 license  6 associated_files  7 min_parser_version
    SubGraphMetadata     0 name  1 description  2 input_tensor_metadata  3 output_tensor_metadata
    TensorMetadata       0 name  1 description  2 dimension_names  3 content  4 process_units
                         5 stats  6 associated_files
    Content              0-1 content_properties (union ContentProperties)  2 range
    ImageProperties      0 color_space (byte: UNKNOWN 0, RGB 1, GRAYSCALE 2)  1 default_size
    ProcessUnit          0-1 options (union ProcessUnitOptions)
    NormalizationOptions 0 mean [float]  1 std [float]
    Stats                0 max [float]  1 min [float]
    AssociatedFile       0 name  1 description  2 type (byte: TENSOR_AXIS_LABELS 2)
    union ContentProperties:  FeatureProperties 1, ImageProperties 2
    union ProcessUnitOptions: NormalizationOptions 1

Task libraries (MediaPipe Tasks, the TFLite Task Library) normalize a float image input as
(pixel - mean) / std from pixels in [0, 255], and name classes from the output's
TENSOR_AXIS_LABELS file, which lives in the zip appended after the model's FlatBuffer.
"""

from __future__ import annotations

import dataclasses
import struct

import flatbuffers
from flatbuffers import encode, number_types, packer
from flatbuffers.table import Table

METADATA_NAME = "TFLITE_METADATA"   # the model's metadata entry task libraries look up
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"        # every field written here exists since schema 1.0.0
RGB, GRAYSCALE = 1, 2
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2
_NORMALIZATION_OPTIONS = 1
TENSOR_AXIS_LABELS = 2


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """What a task library needs to feed the image input."""
    name: str
    description: str
    mean: tuple[float, ...] | None = None      # NormalizationOptions; None: raw pixels (quantized input)
    std: tuple[float, ...] | None = None
    value_range: tuple[float, float] | None = None   # Stats min/max of the values the tensor takes
    color_space: int | None = RGB              # None: not an image (FeatureProperties)


@dataclasses.dataclass(frozen=True)
class Output:
    name: str
    description: str
    value_range: tuple[float, float] | None = None
    labels_file: str | None = None             # TENSOR_AXIS_LABELS associated file, in the zip


def normalization_for_range(low: float, high: float) -> tuple[float, float]:
    """(mean, std) mapping pixels [0, 255] onto [low, high]: (p - mean) / std = low + p (high - low) / 255."""
    std = 255.0 / (high - low)
    return -low * std, std


def build(name: str, description: str, image: ImageInput, output: Output) -> bytes:
    """The ModelMetadata FlatBuffer for a one-input, one-output model."""
    builder = flatbuffers.Builder(1024)
    subgraph_tables = _vector_of_tables(builder, [_subgraph(builder, image, output)])
    strings = {field: builder.CreateString(text) for field, text in
               (("name", name), ("description", description), ("min_parser_version", MIN_PARSER_VERSION))}
    builder.StartObject(8)
    builder.PrependUOffsetTRelativeSlot(0, strings["name"], 0)
    builder.PrependUOffsetTRelativeSlot(1, strings["description"], 0)
    builder.PrependUOffsetTRelativeSlot(3, subgraph_tables, 0)
    builder.PrependUOffsetTRelativeSlot(7, strings["min_parser_version"], 0)
    builder.Finish(builder.EndObject(), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _subgraph(builder, image: ImageInput, output: Output) -> int:
    inputs = _vector_of_tables(builder, [_image_tensor(builder, image)])
    outputs = _vector_of_tables(builder, [_output_tensor(builder, output)])
    builder.StartObject(10)
    builder.PrependUOffsetTRelativeSlot(2, inputs, 0)
    builder.PrependUOffsetTRelativeSlot(3, outputs, 0)
    return builder.EndObject()


def _image_tensor(builder, image: ImageInput) -> int:
    if image.color_space is None:  # an input of another kind (audio, tabular, ...)
        builder.StartObject(0)   # FeatureProperties: no fields
        content = _content(builder, _FEATURE_PROPERTIES, builder.EndObject())
    else:
        builder.StartObject(2)   # ImageProperties
        builder.PrependInt8Slot(0, image.color_space, 0)
        content = _content(builder, _IMAGE_PROPERTIES, builder.EndObject())
    units = None
    if image.mean is not None:
        mean, std = _floats(builder, image.mean), _floats(builder, image.std)
        builder.StartObject(2)   # NormalizationOptions
        builder.PrependUOffsetTRelativeSlot(0, mean, 0)
        builder.PrependUOffsetTRelativeSlot(1, std, 0)
        normalization = builder.EndObject()
        builder.StartObject(2)   # ProcessUnit
        builder.PrependUint8Slot(0, _NORMALIZATION_OPTIONS, 0)
        builder.PrependUOffsetTRelativeSlot(1, normalization, 0)
        units = _vector_of_tables(builder, [builder.EndObject()])
    return _tensor(builder, image.name, image.description, content, units, image.value_range, None)


def _output_tensor(builder, output: Output) -> int:
    builder.StartObject(0)   # FeatureProperties: no fields
    content = _content(builder, _FEATURE_PROPERTIES, builder.EndObject())
    files = None
    if output.labels_file:
        name = builder.CreateString(output.labels_file)
        text = builder.CreateString("Class names, one per line, in the order of the output's scores.")
        builder.StartObject(5)   # AssociatedFile
        builder.PrependUOffsetTRelativeSlot(0, name, 0)
        builder.PrependUOffsetTRelativeSlot(1, text, 0)
        builder.PrependInt8Slot(2, TENSOR_AXIS_LABELS, 0)
        files = _vector_of_tables(builder, [builder.EndObject()])
    return _tensor(builder, output.name, output.description, content, None, output.value_range, files)


def _tensor(builder, name: str, description: str, content: int, units, value_range, files) -> int:
    stats = None
    if value_range is not None:
        high, low = _floats(builder, [value_range[1]]), _floats(builder, [value_range[0]])
        builder.StartObject(2)   # Stats
        builder.PrependUOffsetTRelativeSlot(0, high, 0)
        builder.PrependUOffsetTRelativeSlot(1, low, 0)
        stats = builder.EndObject()
    name_offset, description_offset = builder.CreateString(name), builder.CreateString(description)
    builder.StartObject(7)   # TensorMetadata
    builder.PrependUOffsetTRelativeSlot(0, name_offset, 0)
    builder.PrependUOffsetTRelativeSlot(1, description_offset, 0)
    builder.PrependUOffsetTRelativeSlot(3, content, 0)
    for slot, offset in ((4, units), (5, stats), (6, files)):
        if offset is not None:
            builder.PrependUOffsetTRelativeSlot(slot, offset, 0)
    return builder.EndObject()


def _content(builder, properties_type: int, properties: int) -> int:
    builder.StartObject(3)   # Content
    builder.PrependUint8Slot(0, properties_type, 0)
    builder.PrependUOffsetTRelativeSlot(1, properties, 0)
    return builder.EndObject()


def _floats(builder, values) -> int:
    values = [float(v) for v in values]
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(value)
    return builder.EndVector()


def _vector_of_tables(builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


# Reading: what a base's own metadata says about its image input.
def read_image_input(data: bytes) -> ImageInput | None:
    """The first input's normalization, value range and color space from a ModelMetadata
    FlatBuffer, or None when it describes no input. Raises ValueError on a damaged buffer."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ValueError("not a TFLite Metadata FlatBuffer (no 'M001' identifier)")
    try:
        root = Table(data, encode.Get(packer.uoffset, data, 0))
        subgraph = _first(root, 3)
        tensor = _first(subgraph, 2) if subgraph is not None else None
        if tensor is None:
            return None
        mean = std = None
        for unit in _tables(tensor, 4):
            if _scalar(unit, 0, number_types.Uint8Flags) == _NORMALIZATION_OPTIONS:
                options = _union(unit, 1)
                mean, std = tuple(_float_vector(options, 0)), tuple(_float_vector(options, 1))
        stats = _table(tensor, 5)
        value_range = None
        if stats is not None and _float_vector(stats, 0) and _float_vector(stats, 1):
            value_range = (_float_vector(stats, 1)[0], _float_vector(stats, 0)[0])
        color_space = RGB
        content = _table(tensor, 3)
        kind = _scalar(content, 0, number_types.Uint8Flags) if content is not None else None
        if kind == _IMAGE_PROPERTIES:
            color_space = _scalar(_union(content, 1), 0, number_types.Int8Flags) or RGB
        elif kind == _FEATURE_PROPERTIES:
            color_space = None
        return ImageInput(name=_string(tensor, 0), description=_string(tensor, 1), mean=mean, std=std,
                          value_range=value_range, color_space=color_space)
    except (IndexError, ValueError, TypeError, OverflowError, struct.error, UnicodeDecodeError) as error:
        raise ValueError(f"damaged TFLite Metadata ({type(error).__name__})") from None


def _offset(table: Table, slot: int) -> int:
    return table.Offset(4 + 2 * slot)


def _table(table: Table, slot: int) -> Table | None:
    offset = _offset(table, slot)
    return Table(table.Bytes, table.Indirect(offset + table.Pos)) if offset else None


def _union(table: Table, slot: int) -> Table:
    result = Table(bytearray(), 0)
    table.Union(result, _offset(table, slot))
    return result


def _vector(table: Table, slot: int) -> tuple[int, int]:
    """(start, length) of a vector of 4-byte elements; a damaged length cannot make us loop
    over more elements than the buffer holds."""
    offset = _offset(table, slot)
    if not offset:
        return 0, 0
    start, length = table.Vector(offset), table.VectorLen(offset)
    if start + 4 * length > len(table.Bytes):
        raise ValueError(f"a vector of {length} elements runs past the end of the buffer")
    return start, length


def _tables(table: Table, slot: int) -> list[Table]:
    start, length = _vector(table, slot)
    return [Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(length)]


def _first(table: Table, slot: int) -> Table | None:
    tables = _tables(table, slot)
    return tables[0] if tables else None


def _float_vector(table: Table, slot: int) -> list[float]:
    start, length = _vector(table, slot)
    return [table.Get(number_types.Float32Flags, start + 4 * i) for i in range(length)]


def _scalar(table: Table, slot: int, flags) -> int:
    offset = _offset(table, slot)
    return table.Get(flags, offset + table.Pos) if offset else 0


def _string(table: Table, slot: int) -> str:
    offset = _offset(table, slot)
    return table.String(offset + table.Pos).decode(errors="replace") if offset else ""
