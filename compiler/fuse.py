"""Fuses a prepared base and a converted training head into one model.

Layout of the fused model (subgraph index: what it is):
  0 infer         image -> IF(base) -> head forward -> probabilities   (plain invoke() runs it)
  1 load          image -> IF(base) -> bottleneck
  2 train         the head's train step on cached bottlenecks
  3 train_images  image -> IF(base) -> the head's train step
  4.. save, restore, initialize, set_learning_rate, then the head's variable-init subgraph
  last            the base's subgraphs, entry first, bytes untouched
The base exists once: signatures reach it through an IF op whose condition is a constant
true, so its weights, XNNPACK packing and arena are not duplicated (measured 1.07x peak RSS
against 1.44x for a copy per signature; see ../shared/NOTES-tflite.md).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from tflite_transfer.compiler import model_io, op_versions
from tflite_transfer.compiler.cut import PreparedBase
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.contract import INFER, LOAD, SIGNATURES, TRAIN, TRAIN_IMAGES

# Head-only signatures, after train_images in subgraph order.
_STATE_SIGNATURES = (contract.SAVE, contract.RESTORE, contract.INITIALIZE, contract.SET_LEARNING_RATE)
# Set by op_versions from the fused model's ops; the inputs' values would be stale.
_MIN_RUNTIME = op_versions.MIN_RUNTIME_VERSION


@dataclasses.dataclass(frozen=True)
class FusedModel:
    model: model_io.ModelT
    base_subgraph: int                 # the base's entry subgraph in the fused model
    base_subgraph_count: int           # base subgraphs are [base_subgraph, base_subgraph + n)
    base_buffers: dict[int, int]       # base buffer index -> fused buffer index


class _Fusion:
    """Accumulates op codes and buffers of the fused model, deduplicated."""

    def __init__(self):
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.description = b"tflite-transfer: base + trainable head"
        self.model.operatorCodes, self.model.subgraphs = [], []
        self.model.buffers = [model_io.make_buffer(None)]  # buffer 0: the empty sentinel
        self.model.signatureDefs, self.model.metadata = [], []
        self._op_codes: dict[tuple, int] = {}
        self._buffers_by_hash: dict[bytes, int] = {}

    def op_code(self, op_code: schema.OperatorCodeT) -> int:
        key = model_io.op_code_key(op_code)
        if key not in self._op_codes:
            self.model.operatorCodes.append(model_io.normalized_op_code(op_code))
            self._op_codes[key] = len(self.model.operatorCodes) - 1
        return self._op_codes[key]

    def buffer(self, data: bytes, deduplicate: bool) -> int:
        if not data:
            return 0
        digest = hashlib.sha256(data).digest()
        if deduplicate and digest in self._buffers_by_hash:
            return self._buffers_by_hash[digest]
        self.model.buffers.append(model_io.make_buffer(data))
        index = len(self.model.buffers) - 1
        if deduplicate:
            self._buffers_by_hash[digest] = index
        return index

    def copy_subgraph(self, source: model_io.ModelT, index: int, buffer_map: dict[int, int],
                      subgraph_map: dict[int, int], deduplicate: bool) -> schema.SubGraphT:
        """A copy of `source.subgraphs[index]` with op codes, buffers and subgraph indices remapped."""
        subgraph = copy.deepcopy(source.subgraphs[index])
        for tensor in subgraph.tensors:
            if tensor.buffer not in buffer_map:
                data = model_io.buffer_bytes(source, tensor.buffer)
                buffer_map[tensor.buffer] = self.buffer(data, deduplicate)
            tensor.buffer = buffer_map[tensor.buffer]
        for op in subgraph.operators:
            op.opcodeIndex = self.op_code(source.operatorCodes[op.opcodeIndex])
            model_io.remap_subgraph_indices(op, subgraph_map)
        return subgraph


def fuse_base_and_head(base: PreparedBase, head: model_io.ModelT, metadata_json: str) -> FusedModel:
    _check_variable_names(base.model, head)
    fusion = _Fusion()
    head_signatures = {s.signatureKey.decode(): s for s in head.signatureDefs}
    head_order = [head_signatures[k].subgraphIndex for k in (INFER, TRAIN, *_STATE_SIGNATURES)]
    head_extra = [i for i in range(len(head.subgraphs)) if i not in head_order]  # variable init
    # Final positions: infer, load, train, train_images, save..set_learning_rate, head extras, base.
    head_map = {head_signatures[INFER].subgraphIndex: SIGNATURES.index(INFER),
                head_signatures[TRAIN].subgraphIndex: SIGNATURES.index(TRAIN)}
    for position, key in enumerate(_STATE_SIGNATURES, start=4):
        head_map[head_signatures[key].subgraphIndex] = position
    for position, index in enumerate(head_extra, start=len(SIGNATURES)):
        head_map[index] = position
    base_start = len(SIGNATURES) + len(head_extra)
    base_order = [base.entry_subgraph] + [i for i in range(len(base.model.subgraphs)) if i != base.entry_subgraph]
    base_map = {old: base_start + n for n, old in enumerate(base_order)}

    # Base first, so its buffers come right after the sentinel in their original order.
    base_buffers: dict[int, int] = {0: 0}
    base_subgraphs = [fusion.copy_subgraph(base.model, i, base_buffers, base_map, deduplicate=False)
                      for i in base_order]
    head_buffers: dict[int, int] = {0: 0}
    copy_head = lambda i: fusion.copy_subgraph(head, i, head_buffers, head_map, deduplicate=True)  # noqa: E731
    entry = base.model.subgraphs[base.entry_subgraph]
    image_template = entry.tensors[entry.inputs[0]]
    true_buffer = fusion.buffer(b"\x01", deduplicate=True)

    infer = _call_base_first(fusion, copy_head(head_signatures[INFER].subgraphIndex),
                             head_signatures[INFER], image_template, true_buffer, base_start)
    load = _load_subgraph(fusion, image_template, base.bottleneck_size, true_buffer, base_start)
    train = copy_head(head_signatures[TRAIN].subgraphIndex)
    train_images = _call_base_first(fusion, copy_head(head_signatures[TRAIN].subgraphIndex),
                                    head_signatures[TRAIN], image_template, true_buffer, base_start)
    others = [copy_head(head_signatures[k].subgraphIndex) for k in _STATE_SIGNATURES]
    extras = [copy_head(i) for i in head_extra]
    fusion.model.subgraphs = [infer[0], load[0], train, train_images[0], *others, *extras, *base_subgraphs]
    for position, name in enumerate(SIGNATURES):
        fusion.model.subgraphs[position].name = name.encode()

    signatures = [_renamed(infer[1], INFER, 0), load[1],
                  _renamed(head_signatures[TRAIN], TRAIN, 2),
                  _renamed(train_images[1], TRAIN_IMAGES, 3)]
    signatures += [_renamed(head_signatures[k], k, 4 + n) for n, k in enumerate(_STATE_SIGNATURES)]
    fusion.model.signatureDefs = signatures
    _merge_metadata(fusion, base.model, metadata_json)
    return FusedModel(fusion.model, base_start, len(base_order), base_buffers)


def _renamed(signature: schema.SignatureDefT, key: str, subgraph: int) -> schema.SignatureDefT:
    renamed = copy.deepcopy(signature)
    renamed.signatureKey, renamed.subgraphIndex = key.encode(), subgraph
    return renamed


def _image_tensor(template: schema.TensorT) -> schema.TensorT:
    """The signature's image input: the base's input type, quantization and shape, batch dynamic."""
    image = copy.deepcopy(template)
    image.name, image.buffer = contract.IMAGE.encode(), 0
    dims = model_io.tensor_shape(template)
    image.shape = np.array([1] + [max(d, 1) for d in dims[1:]], np.int32)
    image.shapeSignature = np.array([-1] + dims[1:], np.int32)
    return image


def _bool_true(buffer: int) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name, tensor.type, tensor.buffer = b"base_condition", schema.TensorType.BOOL, buffer
    tensor.shape = np.array([], np.int32)
    return tensor


def _if_op(fusion: _Fusion, condition: int, image: int, bottleneck: int, base: int) -> schema.OperatorT:
    op = schema.OperatorT()
    op.opcodeIndex = fusion.op_code(model_io.make_op_code(schema.BuiltinOperator.IF, 1))
    op.inputs, op.outputs = [condition, image], [bottleneck]
    options = schema.IfOptionsT()
    options.thenSubgraphIndex = options.elseSubgraphIndex = base
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.IfOptions, options
    return op


def _call_base_first(fusion, subgraph, signature, image_template, true_buffer, base):
    """Turns a head subgraph taking `bottleneck` into one taking `image`: IF(base) goes first."""
    signature = copy.deepcopy(signature)
    bottleneck_map = next(t for t in signature.inputs if t.name == contract.BOTTLENECK.encode())
    bottleneck = bottleneck_map.tensorIndex
    subgraph.tensors += [_image_tensor(image_template), _bool_true(true_buffer)]
    image, condition = len(subgraph.tensors) - 2, len(subgraph.tensors) - 1
    subgraph.operators.insert(0, _if_op(fusion, condition, image, bottleneck, base))
    subgraph.inputs = [image if int(t) == bottleneck else int(t) for t in subgraph.inputs]
    bottleneck_map.name, bottleneck_map.tensorIndex = contract.IMAGE.encode(), image
    return subgraph, signature


def _load_subgraph(fusion, image_template, bottleneck_size, true_buffer, base):
    subgraph = schema.SubGraphT()
    bottleneck = schema.TensorT()
    bottleneck.name, bottleneck.type, bottleneck.buffer = contract.BOTTLENECK.encode(), schema.TensorType.FLOAT32, 0
    bottleneck.shape = np.array([1, bottleneck_size], np.int32)
    bottleneck.shapeSignature = np.array([-1, bottleneck_size], np.int32)
    subgraph.tensors = [_image_tensor(image_template), _bool_true(true_buffer), bottleneck]
    subgraph.inputs, subgraph.outputs = [0], [2]
    subgraph.operators = [_if_op(fusion, 1, 0, 2, base)]
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = LOAD.encode(), SIGNATURES.index(LOAD)
    signature.inputs = [_tensor_map(contract.IMAGE, 0)]
    signature.outputs = [_tensor_map(contract.BOTTLENECK, 2)]
    return subgraph, signature


def _tensor_map(name: str, index: int) -> schema.TensorMapT:
    tensor_map = schema.TensorMapT()
    tensor_map.name, tensor_map.tensorIndex = name.encode(), index
    return tensor_map


def _variable_names(model: model_io.ModelT) -> set[bytes]:
    names = set()
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            if model_io.builtin_code(model.operatorCodes[op.opcodeIndex]) == schema.BuiltinOperator.VAR_HANDLE:
                names.add(op.builtinOptions.sharedName or b"")
    return names


def _check_variable_names(base: model_io.ModelT, head: model_io.ModelT) -> None:
    """Resource variables are keyed per interpreter by their shared name: a clash would make
    the base and the head silently share one variable."""
    clash = _variable_names(base) & _variable_names(head)
    if clash:
        names = ", ".join(sorted(n.decode(errors="replace") for n in clash))
        raise InvalidInputError(f"conflicting variable names: the base already has resource variables named {names}")


def _merge_metadata(fusion: _Fusion, base: model_io.ModelT, metadata_json: str) -> None:
    """The base's own metadata (labels, conversion info) is kept; ours is added."""
    for entry in base.metadata or []:
        if entry.name != _MIN_RUNTIME and entry.name != contract.METADATA_KEY.encode():
            _add_metadata(fusion, entry.name.decode(), model_io.buffer_bytes(base, entry.buffer))
    _add_metadata(fusion, contract.METADATA_KEY, metadata_json.encode())


def _add_metadata(fusion: _Fusion, name: str, data: bytes) -> None:
    entry = schema.MetadataT()
    entry.name = name.encode()
    fusion.model.buffers.append(model_io.make_buffer(data))
    entry.buffer = len(fusion.model.buffers) - 1
    fusion.model.metadata.append(entry)
