"""The value range a hosted `.tflite` base expects, read from its standard TFLite Metadata
(the `TFLITE_METADATA` entry that tflite-support's metadata writers add): the first input's
NormalizationOptions (mean, std) say the model takes (pixel - mean) / std for pixels 0..255.

Only the few fields needed are read, by their positions in tflite-support's
metadata_schema.fbs (file identifier "M001"): ModelMetadata.subgraph_metadata (field 3) ->
SubGraphMetadata.input_tensor_metadata (field 2) -> TensorMetadata.process_units (field 4) ->
ProcessUnit.options (a union, field 0; NormalizationOptions is member 1) -> mean (field 0),
std (field 1). The compiler's environment has no metadata schema module (tflite-support pins
protobuf 3.20, which TensorFlow 2.21 cannot use).
"""

from __future__ import annotations

import flatbuffers
from flatbuffers.table import Table

from tflite_transfer.compiler.flatbuffer import model_io

METADATA_NAME = b"TFLITE_METADATA"
_NORMALIZATION_OPTIONS = 1        # ProcessUnitOptions union member
_PIXELS = (0.0, 255.0)


def _field(table: Table, index: int) -> int:
    """The absolute position of a table's field, or 0 when absent (vtable slot 4 + 2 * index)."""
    offset = table.Offset(4 + 2 * index)
    return offset + table.Pos if offset else 0


def _tables(table: Table, index: int) -> list[Table]:
    offset = table.Offset(4 + 2 * index)
    if not offset:
        return []
    start = table.Vector(offset)
    return [Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(offset))]


def _floats(table: Table, index: int) -> list[float]:
    offset = table.Offset(4 + 2 * index)
    if not offset:
        return []
    start = table.Vector(offset)
    return [table.Get(flatbuffers.number_types.Float32Flags, start + 4 * i) for i in range(table.VectorLen(offset))]


def normalization(metadata: bytes) -> tuple[list[float], list[float]] | None:
    """(mean, std) of the first input's NormalizationOptions, or None when there are none."""
    buffer = bytearray(metadata)
    root = Table(buffer, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buffer, 0))
    for subgraph in _tables(root, 3)[:1]:
        for tensor in _tables(subgraph, 2)[:1]:
            for unit in _tables(tensor, 4):
                kind = _field(unit, 0)
                if (not kind or not unit.Offset(6)
                        or unit.Get(flatbuffers.number_types.Uint8Flags, kind) != _NORMALIZATION_OPTIONS):
                    continue
                options = Table(buffer, 0)
                unit.Union(options, unit.Offset(6))
                return _floats(options, 0), _floats(options, 1)
    return None


def input_value_range(model: model_io.ModelT, source: str) -> tuple[float, float] | None:
    """The values a float base input takes when its metadata normalizes 0..255 pixels with one
    mean and std (per-channel ones that differ give no single range); else None."""
    entry = next((e for e in model.metadata or [] if e.name == METADATA_NAME), None)
    if entry is None:
        return None
    subgraph = model.subgraphs[0] if model.subgraphs else None
    if subgraph is None or not subgraph.inputs or \
            subgraph.tensors[subgraph.inputs[0]].type != model_io.TensorType.FLOAT32:
        return None  # an integer input takes its dtype's range (model_input.py)
    try:
        found = normalization(model_io.buffer_bytes(model, entry.buffer))
    except (IndexError, ValueError, TypeError, AttributeError):  # damaged metadata: not known
        return None
    if not found or len(set(found[0])) != 1 or len(set(found[1])) != 1 or found[1][0] <= 0:
        return None
    mean, std = found[0][0], found[1][0]
    return tuple(float((pixel - mean) / std) for pixel in _PIXELS)
