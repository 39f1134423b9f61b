"""Structural checks run on every fused model before it is written (and after every pass in
tests): builtin ops only, the base's tensors and buffers unchanged, the signature contract."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
from tflite_transfer.compiler.flatbuffer.model_io import schema

from tflite_transfer.compiler.flatbuffer import effects, model_io
from tflite_transfer.compiler.errors import VerificationError
from tflite_transfer.runtime import contract


@dataclasses.dataclass(frozen=True)
class OpAudit:
    ops_per_signature: dict[str, int]              # ops run by the signature, callees included
    op_types: dict[str, int]                       # op name -> count over the whole model


def reachable_subgraphs(model: model_io.ModelT, start: int) -> list[int]:
    """`start` and every subgraph its control-flow ops (IF, WHILE, CALL_ONCE...) can call."""
    return model_io.reachable_subgraphs(model, [start])


def audit_ops(model: model_io.ModelT) -> OpAudit:
    """Refuses any op that is not a TFLite builtin (Flex/Select-TF or custom), naming it and
    the signature that runs it."""
    owners = collections.defaultdict(list)
    per_signature = {}
    for signature in model.signatureDefs or []:
        key = signature.signatureKey.decode()
        subgraphs = reachable_subgraphs(model, signature.subgraphIndex)
        per_signature[key] = sum(len(model.subgraphs[i].operators or []) for i in subgraphs)
        for index in subgraphs:
            owners[index].append(key)
    op_types = collections.Counter()
    for index, subgraph in enumerate(model.subgraphs):
        for op in subgraph.operators or []:
            op_code = model.operatorCodes[op.opcodeIndex]
            name = model_io.operator_name(op_code)
            if not model_io.is_builtin(op_code):
                where = ", ".join(f"'{k}'" for k in owners[index]) or "no signature"
                raise VerificationError(
                    f"op '{name}' in subgraph {index} (signature {where}) is not a TFLite builtin "
                    "(Flex/custom ops need a runtime library the stock interpreter lacks)")
            op_types[name] += 1
    return OpAudit(per_signature, dict(sorted(op_types.items())))


def _quantization(tensor: schema.TensorT) -> tuple:
    q = tensor.quantization
    if q is None:
        return ()
    as_tuple = lambda v: tuple(np.asarray(v).ravel().tolist()) if v is not None else ()  # noqa: E731
    return (as_tuple(q.scale), as_tuple(q.zeroPoint), as_tuple(q.min), as_tuple(q.max), q.quantizedDimension)


def _describe(model: model_io.ModelT, tensor: schema.TensorT) -> tuple:
    return (tensor.type, _quantization(tensor), model_io.buffer_bytes(model, tensor.buffer))


def _same_shape(original: list[int], fused: list[int], fixed_batch: int | None) -> bool:
    """Equal, except that a dynamic (-1) dimension may be the fixed batch (--batch)."""
    return len(original) == len(fused) and all(
        o == f or (o < 0 and fixed_batch is not None and f == fixed_batch) for o, f in zip(original, fused))


def check_base_preserved(original: model_io.ModelT, entry: int, fused: model_io.ModelT,
                         fused_entry: int, kept_tensor_count: int, source: str = "base",
                         fixed_batch: int | None = None) -> int:
    """Checks that every base tensor in the fused model (type, shape, quantization, buffer
    bytes) and every base op (op code, options; version equal or lowered) equals the user's
    original model; with `fixed_batch`, dynamic dimensions may have become that batch.
    Returns the number of tensors compared."""
    by_name = collections.defaultdict(list)
    original_subgraph = original.subgraphs[entry]
    for tensor in original_subgraph.tensors:
        by_name[tensor.name].append((_describe(original, tensor), model_io.tensor_shape(tensor)))
    fused_subgraph = fused.subgraphs[fused_entry]
    for tensor in fused_subgraph.tensors[:kept_tensor_count]:
        described, shape = _describe(fused, tensor), model_io.tensor_shape(tensor)
        if not any(described == d and _same_shape(s, shape, fixed_batch) for d, s in by_name.get(tensor.name, [])):
            raise VerificationError(
                f"{source}: base tensor '{model_io.tensor_name(tensor)}' differs from the original "
                "(type, shape, quantization or weight bytes)")
    producers, without_outputs = {}, []
    for op in original_subgraph.operators:
        for output in _outputs(op):
            producers[original_subgraph.tensors[output].name] = op
        if not _outputs(op):  # ASSIGN_VARIABLE, CALL_ONCE...: known by their inputs
            without_outputs.append(op)
    matched = set()
    for op in fused_subgraph.operators:
        if _outputs(op):
            name = fused_subgraph.tensors[op.outputs[0]].name
            source_op = producers.get(name)
            if source_op is None:
                continue  # an adapter op (DEQUANTIZE / RESHAPE) appended after the cut
        else:
            name = f"(no outputs) {model_io.operator_name(fused.operatorCodes[op.opcodeIndex])}".encode()
            inputs = [fused_subgraph.tensors[i].name if i >= 0 else None for i in op.inputs]
            source_op = next((o for o in without_outputs if id(o) not in matched and inputs ==
                              [original_subgraph.tensors[i].name if i >= 0 else None for i in o.inputs]), None)
            if source_op is None:
                raise VerificationError(f"{source}: the op {name.decode()} on {inputs} is not in the original")
        matched.add(id(source_op))
        # Same op; its version may only have been lowered (op_versions: kernels never read it).
        (code, custom, version) = model_io.op_code_key(original.operatorCodes[source_op.opcodeIndex])
        (fused_code, fused_custom, fused_version) = model_io.op_code_key(fused.operatorCodes[op.opcodeIndex])
        same_code = (code, custom) == (fused_code, fused_custom) and fused_version <= version
        same_inputs = ([original_subgraph.tensors[i].name if i >= 0 else None for i in source_op.inputs]
                       == [fused_subgraph.tensors[i].name if i >= 0 else None for i in op.inputs])
        if not (same_code and same_inputs and source_op.builtinOptionsType == op.builtinOptionsType
                and _options(source_op) == _options(op)):
            raise VerificationError(f"{source}: the op producing '{name.decode()}' differs from the original")
    for op in original_subgraph.operators:  # what writes state must survive the cut (graph.prune_ops)
        if effects.writes_state(original, original_subgraph, op) and id(op) not in matched:
            raise VerificationError(
                f"{source}: the base's {model_io.operator_name(original.operatorCodes[op.opcodeIndex])} "
                f"op {list(op.inputs)} writes state but is missing from the compiled model")
    return kept_tensor_count


def _outputs(op: schema.OperatorT) -> list[int]:
    return [int(o) for o in (op.outputs if op.outputs is not None else [])]


def _options(op: schema.OperatorT) -> dict:
    return {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
            for k, v in (vars(op.builtinOptions) if op.builtinOptions is not None else {}).items() if "subgraph" not in k.lower()}


def check_contract(model: model_io.ModelT, specs: dict[str, contract.SignatureSpec]) -> None:
    """Checks the signature keys and their exact input/output names (contract.signature_specs),
    and that infer is subgraph 0."""
    found = {s.signatureKey.decode(): ([t.name.decode() for t in s.inputs or []],
                                       [t.name.decode() for t in s.outputs or []])
             for s in model.signatureDefs or []}
    if set(found) != set(specs):
        raise VerificationError(f"signatures {sorted(found)} differ from the contract {sorted(specs)}")
    for key, spec in specs.items():
        inputs, outputs = found[key]
        if sorted(inputs) != sorted(spec.inputs) or sorted(outputs) != sorted(spec.outputs):
            raise VerificationError(f"signature '{key}' has inputs {inputs} / outputs {outputs}, "
                                    f"expected {list(spec.inputs)} / {list(spec.outputs)}")
    if model_io.signature_subgraph(model, contract.SIGNATURES[0]) != 0:
        raise VerificationError(f"'{contract.SIGNATURES[0]}' must be subgraph 0 so that a plain "
                                "invoke() runs inference")
