"""The one graph-editing API over the FlatBuffer IR (`model_io.ModelT`, the schema's object
API): add op codes (de-duplicated), buffers, tensors and ops; import a subgraph from another
model; prune unused ops, tensors, op codes and buffers; keep and reorder subgraphs; set
metadata. Every pass (cut, fuse, export, op_versions) edits models through these functions
and grows no private helpers of its own.

Index bookkeeping is what goes wrong when a graph is edited by hand (an op code appended
twice, a signature pointing at a tensor that moved, a CALL_ONCE still naming an old subgraph
index), so each function here keeps every reference it invalidates in step: op inputs,
outputs and intermediates, subgraph inputs/outputs, signature tensor maps, subgraph indices
hidden in op options, metadata buffers.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Iterable

import numpy as np

from tflite_transfer.compiler.flatbuffer import effects, model_io
from tflite_transfer.compiler.flatbuffer.model_io import schema

ModelT, SubGraphT, OperatorT, TensorT = schema.ModelT, schema.SubGraphT, schema.OperatorT, schema.TensorT


def new_model(description: str) -> ModelT:
    """An empty model: version 3, buffer 0 the empty sentinel every unbacked tensor uses."""
    model = schema.ModelT()
    model.version = 3
    model.description = description.encode()
    model.operatorCodes, model.subgraphs, model.signatureDefs, model.metadata = [], [], [], []
    model.buffers = [model_io.make_buffer(None)]
    return model


def options(name: str, **fields) -> tuple[int, object]:
    """(builtinOptionsType, options object) for a schema options table, e.g.
    options("IfOptions", thenSubgraphIndex=9, elseSubgraphIndex=9)."""
    value = getattr(schema, f"{name}T")()
    for field, field_value in fields.items():
        if not hasattr(value, field):
            raise AttributeError(f"{name} has no field {field}")
        setattr(value, field, field_value)
    return getattr(schema.BuiltinOptions, name), value


class GraphEditor:
    """Adds to one model, de-duplicating op codes (always) and buffers (when asked)."""

    def __init__(self, model: ModelT):
        self.model = model
        for field in ("operatorCodes", "subgraphs", "signatureDefs", "metadata"):
            if getattr(model, field) is None:
                setattr(model, field, [])
        if not model.buffers:
            model.buffers = [model_io.make_buffer(None)]
        self._op_codes = {}
        for index, op_code in enumerate(model.operatorCodes):
            self._op_codes.setdefault(model_io.op_code_key(op_code), index)
        self._buffers_by_hash: dict[bytes, int] = {}

    # Op codes and buffers.
    def op_code(self, op_code: schema.OperatorCodeT) -> int:
        """The index of an equal op code (builtin code, custom code, version), added if new."""
        key = model_io.op_code_key(op_code)
        if key not in self._op_codes:
            self.model.operatorCodes.append(model_io.normalized_op_code(op_code))
            self._op_codes[key] = len(self.model.operatorCodes) - 1
        return self._op_codes[key]

    def builtin(self, code: int, version: int) -> int:
        return self.op_code(model_io.make_op_code(code, version))

    def buffer(self, data: bytes | None, deduplicate: bool = False) -> int:
        """A new buffer holding `data`; with `deduplicate`, an equal buffer added earlier through
        this editor is reused. None (a tensor computed at run time) gives 0, the sentinel; b""
        gives its own buffer with a present, empty data vector: an empty constant (e.g. the
        shape [0] of a RESHAPE to a scalar) on buffer 0 is "not produced" for TFLite's
        verifier, which refuses the whole model (see model_io.is_constant)."""
        if data is None:
            return 0
        data = bytes(data)
        digest = hashlib.sha256(data).digest()
        if deduplicate and digest in self._buffers_by_hash:
            return self._buffers_by_hash[digest]
        self.model.buffers.append(model_io.make_buffer(data))
        index = len(self.model.buffers) - 1
        if deduplicate:
            self._buffers_by_hash[digest] = index
        return index

    # Tensors and ops.
    def tensor(self, subgraph: SubGraphT, name: str, tensor_type: int, shape: Iterable[int],
               data: bytes | None = None, buffer: int | None = None) -> int:
        """Appends a tensor; -1 in `shape` marks a dynamic dimension (stored as 1 in `shape`
        and -1 in `shape_signature`, as the converter writes it)."""
        tensor = schema.TensorT()
        tensor.name, tensor.type = name.encode(), tensor_type
        dims = [int(d) for d in shape]
        tensor.shape = np.array([1 if d < 0 else d for d in dims], np.int32)
        if any(d < 0 for d in dims):
            tensor.shapeSignature = np.array(dims, np.int32)
        tensor.buffer = buffer if buffer is not None else self.buffer(data, deduplicate=True)
        return append_tensor(subgraph, tensor)

    def op(self, subgraph: SubGraphT, code: int, version: int, inputs: Iterable[int],
           outputs: Iterable[int], op_options: tuple[int, object] = (0, None),
           position: int | None = None) -> OperatorT:
        """Appends (or inserts at `position`) a builtin op."""
        op = schema.OperatorT()
        op.opcodeIndex = self.builtin(code, version)
        op.inputs, op.outputs = [int(i) for i in inputs], [int(o) for o in outputs]
        op.builtinOptionsType, op.builtinOptions = op_options
        if subgraph.operators is None:
            subgraph.operators = []
        subgraph.operators.insert(len(subgraph.operators) if position is None else position, op)
        return op

    def import_subgraph(self, source: ModelT, index: int, buffer_map: dict[int, int],
                        subgraph_map: dict[int, int], deduplicate: bool) -> SubGraphT:
        """A copy of `source.subgraphs[index]` for this model: op codes and buffers added here
        (`buffer_map` source -> ours, shared across calls), subgraph indices remapped."""
        subgraph = copy.deepcopy(source.subgraphs[index])
        for tensor in subgraph.tensors or []:
            if tensor.buffer not in buffer_map:
                buffer_map[tensor.buffer] = self.buffer(model_io.buffer_data(source, tensor.buffer), deduplicate)
            tensor.buffer = buffer_map[tensor.buffer]
        for op in subgraph.operators or []:
            op.opcodeIndex = self.op_code(source.operatorCodes[op.opcodeIndex])
            model_io.remap_subgraph_indices(op, subgraph_map)
        return subgraph

    # Metadata.
    def set_metadata(self, name: str | bytes, data: bytes) -> None:
        """Sets a metadata entry; its buffer is replaced in place when nothing else uses it."""
        set_metadata(self.model, name, data)


def append_tensor(subgraph: SubGraphT, tensor: TensorT) -> int:
    if subgraph.tensors is None:
        subgraph.tensors = []
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def tensor_map(name: str, index: int) -> schema.TensorMapT:
    mapping = schema.TensorMapT()
    mapping.name, mapping.tensorIndex = name.encode(), int(index)
    return mapping


def signature_def(key: str, subgraph: int, inputs: dict[str, int], outputs: dict[str, int]) -> schema.SignatureDefT:
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = key.encode(), subgraph
    signature.inputs = [tensor_map(n, i) for n, i in inputs.items()]
    signature.outputs = [tensor_map(n, i) for n, i in outputs.items()]
    return signature


# Pruning.
def _op_tensors(op: OperatorT) -> list[int]:
    tensors = [int(t) for t in (op.inputs if op.inputs is not None else []) if t >= 0]
    tensors += [int(t) for t in (op.outputs if op.outputs is not None else [])]
    tensors += [int(t) for t in (op.intermediates if op.intermediates is not None else [])]
    return tensors


def prune_ops(model: ModelT, subgraph: SubGraphT, outputs: Iterable[int]) -> set[int]:
    """Keeps the ops the tensors `outputs` depend on, and every op that writes state (a
    variable assignment, CALL_ONCE, ...: compiler/flatbuffer/effects.py) with what it depends
    on, in their order; makes `outputs` the subgraph's outputs. Returns every tensor the kept
    ops use (plus `outputs`). Ops with side effects have no outputs anyone needs: keeping only
    needed outputs would silently drop them."""
    needed = {int(t) for t in outputs}
    kept = []
    for op in reversed(subgraph.operators or []):
        outputs_of_op = op.outputs if op.outputs is not None else []
        if any(int(t) in needed for t in outputs_of_op) or effects.writes_state(model, subgraph, op):
            kept.append(op)
            needed.update(_op_tensors(op))
    subgraph.operators = kept[::-1]
    subgraph.outputs = [int(t) for t in outputs]
    return needed


def prune_tensors(model: ModelT, subgraph_index: int) -> dict[int, int]:
    """Drops the tensors of a subgraph that no op, subgraph input or output uses, keeping the
    others in their order; remaps ops, inputs/outputs and signature tensor maps (entries naming
    a dropped tensor go). Returns old index -> new index."""
    subgraph = model.subgraphs[subgraph_index]
    used = {int(t) for t in subgraph.inputs} | {int(t) for t in subgraph.outputs}
    for op in subgraph.operators or []:
        used.update(_op_tensors(op))
    order = sorted(used)
    new_index = {old: new for new, old in enumerate(order)}

    def remap(indices):
        return [new_index[int(t)] if t >= 0 else -1 for t in indices]

    for op in subgraph.operators or []:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    subgraph.inputs, subgraph.outputs = remap(subgraph.inputs), remap(subgraph.outputs)
    subgraph.tensors = [subgraph.tensors[i] for i in order]
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == subgraph_index:
            for field in ("inputs", "outputs"):
                maps = [m for m in getattr(signature, field) or [] if m.tensorIndex in new_index]
                for mapping in maps:
                    mapping.tensorIndex = new_index[mapping.tensorIndex]
                setattr(signature, field, maps)
    return new_index


def select_subgraphs(model: ModelT, order: list[int]) -> dict[int, int]:
    """Keeps the subgraphs `order` lists, in that order; remaps subgraph indices in op options
    and signatures (signatures of dropped subgraphs go). Returns old -> new index."""
    mapping = {old: new for new, old in enumerate(order)}
    model.subgraphs = [model.subgraphs[i] for i in order]
    model.signatureDefs = [s for s in model.signatureDefs or [] if s.subgraphIndex in mapping]
    for signature in model.signatureDefs:
        signature.subgraphIndex = mapping[signature.subgraphIndex]
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            model_io.remap_subgraph_indices(op, mapping)
    return mapping


def compact_buffers(model: ModelT) -> None:
    """Keeps only the buffers tensors and metadata use (the sentinel 0 stays first)."""
    used = sorted({0} | {t.buffer for s in model.subgraphs for t in s.tensors or []}
                  | {m.buffer for m in model.metadata or []})
    new_index = {old: new for new, old in enumerate(used)}
    model.buffers = [model.buffers[i] for i in used]
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors or []:
            tensor.buffer = new_index[tensor.buffer]
    for entry in model.metadata or []:
        entry.buffer = new_index[entry.buffer]


def set_op_code_table(model: ModelT, codes: list, assignments: list[tuple[OperatorT, int]]) -> None:
    """Replaces the op-code table; `assignments` gives every op its index in `codes`."""
    for op, index in assignments:
        op.opcodeIndex = index
    model.operatorCodes = list(codes)


def operators(model: ModelT) -> Iterable[tuple[int, OperatorT]]:
    """(subgraph index, op) for every op of the model."""
    for index, subgraph in enumerate(model.subgraphs):
        for op in subgraph.operators or []:
            yield index, op


# Metadata.
def get_metadata(model: ModelT, name: str | bytes) -> bytes | None:
    key = name.encode() if isinstance(name, str) else name
    for entry in model.metadata or []:
        if entry.name == key:
            return model_io.buffer_bytes(model, entry.buffer)
    return None


def set_metadata(model: ModelT, name: str | bytes, data: bytes) -> None:
    """Adds or replaces a metadata entry. A buffer only this entry uses is replaced in place
    (the converter's C++ writer does the same with min_runtime_version); a shared one is not
    touched and the entry gets a new buffer."""
    key = name.encode() if isinstance(name, str) else name
    if model.metadata is None:
        model.metadata = []
    entry = next((e for e in model.metadata if e.name == key), None)
    if entry is not None and entry.buffer > 0 and _buffer_users(model, entry.buffer) == 1:
        model.buffers[entry.buffer] = model_io.make_buffer(data)
        return
    model.buffers.append(model_io.make_buffer(data))
    if entry is None:
        entry = schema.MetadataT()
        entry.name = key
        model.metadata.append(entry)
    entry.buffer = len(model.buffers) - 1


def _buffer_users(model: ModelT, buffer: int) -> int:
    count = sum(1 for e in model.metadata or [] if e.buffer == buffer)
    return count + sum(1 for g in model.subgraphs for t in g.tensors or [] if t.buffer == buffer)
