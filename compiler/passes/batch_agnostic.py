"""Makes a fixed-batch-of-1 base run at any batch, where that is exact, and proves it.

Many published classifiers (TF1-era hosted models, EfficientNet-Lite, tflite-model-maker
output) were converted with an input of [1, H, W, C] and keep batch-1 constants: a RESHAPE to
[1, N] near the pooled features, a STRIDED_SLICE ending at 1 on the batch axis. Such a base
runs at batch 1 only: at batch 2 the builtin RESHAPE fails ("num_input_elements !=
num_output_elements") and XNNPACK fails to reshape its runtime.

This pass works on the base's entry subgraph inside the fused model:
1. follows the batch from the image input through the ops (`batched` tensors);
2. rewrites what is exactly batch-agnostic once written differently: a RESHAPE whose constant
   target keeps a leading batch of 1 and moves no data across samples gets -1 there (in the
   shape tensor, a new constant, and in ReshapeOptions.new_shape); a STRIDED_SLICE taking
   [0:1] of the batch gets begin/end masks on the batch axis; every batched tensor's
   shape_signature [1, ...] becomes [-1, ...];
3. refuses what mixes or fixes the batch and cannot be rewritten (an axis 0 in SQUEEZE /
   CONCATENATION / MEAN / GATHER / TRANSPOSE / ..., a BROADCAST_TO of a batched tensor, an
   elementwise op broadcasting two batched tensors of different ranks) and names it;
4. proves the result: the base, up to the cut, run on k images at once equals k single calls
   under the same interpreter options: bit for bit with XNNPACK, and with the builtin kernels
   bit for bit or within float32 rounding (batch_check.ROUNDING_ULPS).
A base that is refused or fails the check is left as the user gave it; the caller then fixes
the image signatures at batch 1 (runtimes loop over images) instead of advertising a batch
the base cannot run.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from tflite_transfer.compiler.passes import batch_check
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType

CHECK_BATCH = 3                              # k images at once against k single calls
_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "POW",
                "FLOOR_DIV", "FLOOR_MOD", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "EQUAL",
                "NOT_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "SELECT", "SELECT_V2", "PRELU"}
_REDUCTIONS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL"}


@dataclasses.dataclass(frozen=True)
class AgnosticReport:
    fixed_input: bool                 # the base's image input had a fixed batch (of 1)
    rewrites: tuple[str, ...]         # one entry per rewritten op
    opened_signatures: int            # tensors whose shape_signature [1, ...] became [-1, ...]
    blocker: str | None               # why the base stays at batch 1; None: any batch works
    comparisons: tuple = ()           # batch_check.BatchComparison per interpreter configuration

    def describe(self) -> str:
        if self.blocker is not None:
            return (f"the base runs at batch 1 only ({self.blocker}): image signatures fixed at "
                    "batch 1, runtimes run images one at a time")
        done = [", ".join(self.rewrites)] if self.rewrites else []
        if self.fixed_input:
            done.append(f"{self.opened_signatures} shape signatures [1, ...] -> [-1, ...]")
        if not done:
            return ""
        same = "bit for bit"
        if not all(c.exact for c in self.comparisons):
            same = ", ".join(("bit for bit" if c.exact else f"within {c.ulps:.3g} float32 ulps") + f" in {c.kernels}"
                             for c in self.comparisons)
        return (f"fixed-batch base made batch-agnostic ({'; '.join(done)}); batch {CHECK_BATCH} equals "
                f"{CHECK_BATCH} single calls {same}")


class _Blocked(Exception):
    """An op that fixes or mixes the batch and that this pass cannot rewrite."""


def make_batch_agnostic(model: model_io.ModelT, base_subgraph: int,
                        kept_tensor_count: int) -> tuple[model_io.ModelT, AgnosticReport]:
    """(candidate model, report). The candidate is `model` with the base's entry subgraph
    rewritten; use it only when `report.blocker` is None. Buffers are shared, not copied."""
    candidate = copy.copy(model)
    candidate.subgraphs = list(model.subgraphs)
    candidate.subgraphs[base_subgraph] = subgraph = copy.deepcopy(model.subgraphs[base_subgraph])
    candidate.buffers = list(model.buffers)
    candidate.operatorCodes = list(model.operatorCodes)   # new op codes must not reach `model`
    image = subgraph.tensors[subgraph.inputs[0]]
    fixed_input = model_io.tensor_shape(image)[:1] != [-1]
    rewrites: list[str] = []
    doubt = None
    try:
        batched = _batched_tensors(candidate, subgraph)
        for op in list(subgraph.operators):
            _rewrite_or_check(candidate, subgraph, op, batched, rewrites)
        opened = _open_shape_signatures(candidate, subgraph, batched)
    except _Blocked as blocked:
        if fixed_input:
            return model, AgnosticReport(fixed_input, (), 0, str(blocked))
        # A base converted with a dynamic batch that this analysis cannot vouch for (e.g. a
        # transpose through the batch axis): left as given, the run below decides.
        candidate, rewrites, opened, doubt = model, [], 0, str(blocked)
        subgraph = model.subgraphs[base_subgraph]
    cut = _cut_tensor(subgraph, kept_tensor_count)
    # Bit for bit under XNNPACK; the builtin kernels may differ by float rounding (they pick
    # vector or scalar loops by size), never by mixing samples (batch_check.ROUNDING_ULPS).
    problem, comparisons = batch_check.run_batch_against_singles(candidate, base_subgraph, cut, CHECK_BATCH)
    if problem is not None:
        return model, AgnosticReport(fixed_input, tuple(rewrites), opened,
                                     f"{doubt}; {problem}" if doubt else problem, comparisons)
    return candidate, AgnosticReport(fixed_input, tuple(rewrites), opened, None, comparisons)


# What carries the batch.
def _name(model, op) -> str:
    return model_io.operator_name(model.operatorCodes[op.opcodeIndex])


def _constant(model, subgraph, index: int) -> np.ndarray | None:
    """The integer values of a constant input, or None when it is computed at run time."""
    if index < 0:
        return None
    tensor = subgraph.tensors[index]
    data = model_io.buffer_bytes(model, tensor.buffer)
    if not data:
        return None
    dtype = {TensorType.INT32: np.int32, TensorType.INT64: np.int64}.get(tensor.type)
    return None if dtype is None else np.frombuffer(data, dtype).astype(np.int64)


def _batched_tensors(model, subgraph) -> set[int]:
    """Tensors holding per-sample data along axis 0: the image, and every non-scalar output of
    an op reading one (SHAPE's output holds the batch as a value, not along an axis)."""
    batched = {int(subgraph.inputs[0])}
    for op in subgraph.operators:
        if _name(model, op) == "SHAPE" or not any(int(i) in batched for i in op.inputs if i >= 0):
            continue
        batched.update(int(o) for o in op.outputs if _rank(subgraph.tensors[o]) > 0)
    return batched


def _rank(tensor) -> int:
    return 0 if tensor.shape is None else len(tensor.shape)


def _tensor_label(subgraph, index: int) -> str:
    tensor = subgraph.tensors[index]
    return f"'{model_io.tensor_name(tensor)}' {[int(d) for d in tensor.shape]}"


def _axis(value: int, rank: int) -> int:
    return value + rank if value < 0 else value


def _rewrite_or_check(model, subgraph, op, batched: set[int], rewrites: list[str]) -> None:
    name = _name(model, op)
    inputs = [int(i) for i in op.inputs]
    data = inputs[0] if inputs else -1
    if not any(i in batched for i in inputs if i >= 0) or op.outputs is None or not len(op.outputs):
        return
    out = int(op.outputs[0])
    rank = len(subgraph.tensors[data].shape) if data >= 0 else 0
    where = f"{name} {_tensor_label(subgraph, out)}"
    options = op.builtinOptions
    if name == "RESHAPE":
        _rewrite_reshape(model, subgraph, op, where, rewrites)
    elif name == "STRIDED_SLICE":
        _rewrite_strided_slice(model, subgraph, op, where, rewrites)
    elif name == "SQUEEZE":
        dims = [] if options is None or options.squeezeDims is None else [int(d) for d in options.squeezeDims]
        if not dims or 0 in [_axis(d, rank) for d in dims]:
            raise _Blocked(f"{where} squeezes the batch axis")
    elif name == "EXPAND_DIMS":
        axis = _constant(model, subgraph, inputs[1])
        if axis is None or _axis(int(axis[0]), rank + 1) == 0:
            raise _Blocked(f"{where} inserts an axis before the batch")
    elif name in ("CONCATENATION", "PACK"):
        if _axis(int(options.axis), rank + (name == "PACK")) == 0:
            raise _Blocked(f"{where} joins along the batch axis")
        constant = [i for i in inputs if i not in batched]
        if constant:
            raise _Blocked(f"{where} joins the batch with {_tensor_label(subgraph, constant[0])} of batch 1")
    elif name == "UNPACK" and _axis(int(options.axis), rank) == 0:
        raise _Blocked(f"{where} splits the batch")
    elif name in ("SPLIT", "SPLIT_V"):
        axis = _constant(model, subgraph, inputs[0] if name == "SPLIT" else inputs[2])
        tensor_rank = len(subgraph.tensors[inputs[1] if name == "SPLIT" else inputs[0]].shape)
        if axis is None or _axis(int(axis[0]), tensor_rank) == 0:
            raise _Blocked(f"{where} splits along the batch axis")
    elif name in ("GATHER", "ARG_MAX", "ARG_MIN", "CUMSUM", "REVERSE_V2") or name in _REDUCTIONS:
        if name == "GATHER":
            axes = [int(options.axis)]
        else:
            found = _constant(model, subgraph, inputs[1])
            axes = None if found is None else [int(a) for a in found]
        if axes is None or 0 in [_axis(a, rank) for a in axes]:
            raise _Blocked(f"{where} works along the batch axis")
    elif name == "TRANSPOSE":
        perm = _constant(model, subgraph, inputs[1])
        if perm is None or int(perm[0]) != 0:
            raise _Blocked(f"{where} moves the batch axis")
    elif name in ("PAD", "PADV2", "MIRROR_PAD"):
        paddings = _constant(model, subgraph, inputs[1])
        if paddings is None or paddings[0] != 0 or paddings[1] != 0:
            raise _Blocked(f"{where} pads the batch axis")
    elif name == "TILE":
        multiples = _constant(model, subgraph, inputs[1])
        if multiples is None or int(multiples[0]) != 1:
            raise _Blocked(f"{where} tiles the batch axis")
    elif name == "BROADCAST_TO":
        raise _Blocked(f"{where} has a fixed batch-1 target shape")
    elif name in _ELEMENTWISE:
        _rewrite_broadcast(model, subgraph, op, batched, where, rewrites)


def _rewrite_reshape(model, subgraph, op, where: str, rewrites: list[str]) -> None:
    options = op.builtinOptions
    option_shape = None if options is None or options.newShape is None or not len(options.newShape) \
        else [int(d) for d in options.newShape]
    has_input = len(op.inputs) > 1 and op.inputs[1] >= 0
    target = _constant(model, subgraph, int(op.inputs[1])) if has_input else option_shape
    if target is None:
        if has_input:
            return  # computed at run time (SHAPE/STRIDED_SLICE...): dynamic already; the run checks it
        raise _Blocked(f"{where} has no target shape")
    target = [int(d) for d in target]
    source = [int(d) for d in subgraph.tensors[op.inputs[0]].shape]
    if target and target[0] == -1 and target.count(-1) == 1:
        return
    per_sample = int(np.prod(source[1:])) if source else 0
    rest = target[1:]
    known = int(np.prod([d for d in rest if d != -1])) if rest else 1
    if rest.count(-1) == 1 and known > 0 and per_sample % known == 0:
        rest = [per_sample // known if d == -1 else d for d in rest]
    if not target or target[0] != 1 or not source or source[0] != 1 or -1 in rest \
            or int(np.prod(rest)) != per_sample:
        raise _Blocked(f"{where}: target {target} does not keep the batch axis of {source}")
    new_target = np.array([-1] + rest, np.int32)
    if has_input:
        shape_index = _append_constant(model, subgraph, f"{model_io.tensor_name(subgraph.tensors[op.inputs[1]])}"
                                       "/any_batch", new_target)
        op.inputs = [int(op.inputs[0]), shape_index, *[int(i) for i in op.inputs[2:]]]
    if option_shape is not None:
        options.newShape = new_target.tolist()
    rewrites.append(f"RESHAPE {_tensor_label(subgraph, op.outputs[0])} target {target} -> {new_target.tolist()}")


def _rewrite_broadcast(model, subgraph, op, batched: set[int], where: str, rewrites: list[str]) -> None:
    """An elementwise op on batched inputs of different ranks, e.g. MUL([1, 14, 10, 8], [1, 8])
    after the converter folded a squeeze-excitation RESHAPE [1, 1, 1, 8] into the broadcast:
    aligned from the right, the lower-rank input's batch of 1 meets a spatial axis, which only
    lines up at batch 1. A RESHAPE to [-1, 1, 1, 8] (a pure view: same bytes, same
    quantization) puts its batch back on axis 0; at batch 1 the op computes the same values."""
    operands = [int(i) for i in op.inputs if int(i) in batched]
    rank = max(len(subgraph.tensors[i].shape) for i in operands)
    for position, index in enumerate(int(i) for i in op.inputs):
        tensor = subgraph.tensors[index] if index >= 0 else None
        if index not in batched or len(tensor.shape) == rank:
            continue
        shape = [int(d) for d in tensor.shape]
        if not shape or shape[0] != 1:
            raise _Blocked(f"{where} broadcasts {_tensor_label(subgraph, index)} against a batch")
        target = [-1] + [1] * (rank - len(shape)) + shape[1:]
        view = copy.deepcopy(tensor)
        view.name = model_io.tensor_name(tensor).encode() + b"/batch_axis"
        view.shape = np.array([1] + target[1:], np.int32)
        view.shapeSignature = np.array(target, np.int32)
        subgraph.tensors.append(view)
        view_index = len(subgraph.tensors) - 1
        shape_index = _append_constant(model, subgraph, f"{model_io.tensor_name(tensor)}/batch_axis_shape",
                                       np.array(target, np.int32))
        _insert_reshape_before(model, subgraph, op, index, shape_index, view_index, target)
        op.inputs = [view_index if n == position else int(i) for n, i in enumerate(op.inputs)]
        batched.add(view_index)
        rewrites.append(f"{where.split()[0]} {_tensor_label(subgraph, int(op.outputs[0]))}: input "
                        f"{shape} viewed as {target}")


def _append_constant(model, subgraph, name: str, values: np.ndarray) -> int:
    return graph.GraphEditor(model).tensor(subgraph, name, TensorType.INT32, values.shape, data=values.tobytes())


def _insert_reshape_before(model, subgraph, op, source: int, shape: int, output: int, target: list[int]) -> None:
    position = next(n for n, existing in enumerate(subgraph.operators) if existing is op)
    graph.GraphEditor(model).op(subgraph, BuiltinOperator.RESHAPE, 1, [source, shape], [output],
                                graph.options("ReshapeOptions", newShape=list(target)), position=position)


def _rewrite_strided_slice(model, subgraph, op, where: str, rewrites: list[str]) -> None:
    begin, end, strides = (_constant(model, subgraph, int(i)) for i in op.inputs[1:4])
    if begin is None or end is None or strides is None:
        raise _Blocked(f"{where} slices with run-time bounds")
    options = op.builtinOptions
    begin_mask, end_mask = int(options.beginMask), int(options.endMask)
    if (int(options.shrinkAxisMask) | int(options.ellipsisMask) | int(options.newAxisMask)) & 1:
        raise _Blocked(f"{where} drops or re-reads the batch axis")
    whole_batch = (begin_mask & 1 or int(begin[0]) == 0) and int(strides[0]) == 1 \
        and (end_mask & 1 or int(end[0]) == 1)
    if not whole_batch:
        raise _Blocked(f"{where} takes part of the batch")
    if begin_mask & 1 and end_mask & 1:
        return
    options.beginMask, options.endMask = begin_mask | 1, end_mask | 1
    rewrites.append(f"STRIDED_SLICE {_tensor_label(subgraph, op.outputs[0])} batch [0:1] -> [:]")


def _open_shape_signatures(model, subgraph, batched: set[int]) -> int:
    opened = 0
    for index in sorted(batched):
        tensor = subgraph.tensors[index]
        shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
        if not shape or model_io.buffer_bytes(model, tensor.buffer):
            continue
        signature = model_io.tensor_shape(tensor)
        if signature[0] == 1:
            tensor.shapeSignature = np.array([-1] + signature[1:], np.int32)
            opened += 1
    return opened


def _cut_tensor(subgraph, kept_tensor_count: int) -> int:
    """The user's bottleneck: the input of the first adapter op (DEQUANTIZE/RESHAPE appended
    after the cut, whose outputs come after the kept tensors), else the subgraph's output.
    The check stops there: the adapter's float DEQUANTIZE may round differently per batch
    size (vector vs scalar loop) while being per-sample by construction."""
    for op in subgraph.operators:
        if int(op.outputs[0]) >= kept_tensor_count:
            return int(op.inputs[0])
    return int(subgraph.outputs[0])
