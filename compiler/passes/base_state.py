"""The base's own state: resource variables a streaming base (a keyword spotter's ring buffer
of recent frames, a running accumulator) reads and writes on every call, kept exact or refused.

What a stateful base becomes (runtime/SPEC.md#stateful-bases):
- its ops are all kept, assignments and CALL_ONCE included (graph.prune_ops), so one call of
  `load`, `infer` or `train_images` advances the state exactly like one call of the original;
  the three share the base subgraph and therefore one stream per interpreter;
- every variable the base writes on a call becomes a state entry with the role
  `contract.BASE_STATE`: `save` returns it, `restore` writes it, and `initialize` re-runs the
  base's own init subgraph (an IF with a constant-true condition), so it is reset to exactly
  the values the original starts from;
- its images run at the base's own batch (the input's fixed batch, else 1): state kept per
  stream is only the original's at the batch the original was called with.

What cannot be made exact is refused with one line naming the op or variable: state kept in
`is_variable` tensors or in random-generator kernels (nothing can save or reset it), a hash
table filled on every call, a variable written on every call without an initial value from
the init subgraph (`save` before the first call would fail), a variable whose shape depends
on the batch, and a fixed image batch other than the base's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.compiler.flatbuffer import effects, graph, model_io
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.runtime import contract

# Variable types a checkpoint and every runtime's state API can hold, with their numpy names.
_DTYPES = {TensorType.FLOAT32: "float32", TensorType.FLOAT16: "float16", TensorType.INT32: "int32",
           TensorType.INT64: "int64", TensorType.INT16: "int16", TensorType.INT8: "int8",
           TensorType.UINT8: "uint8", TensorType.BOOL: "bool"}


@dataclasses.dataclass(frozen=True)
class BaseVariable:
    container: bytes
    shared_name: bytes          # resource variables are keyed per interpreter by (container, shared_name)
    name: str                   # its state name in the contract
    tensor_type: int
    shape: tuple[int, ...]

    @property
    def label(self) -> str:
        text = self.shared_name.decode(errors="replace")
        return f"{self.container.decode(errors='replace')}/{text}" if self.container else text


@dataclasses.dataclass(frozen=True)
class BaseState:
    """The variables a base writes on every call (none: a stateless base)."""
    variables: tuple[BaseVariable, ...] = ()
    init_subgraphs: tuple[int, ...] = ()     # subgraphs of the base model its CALL_ONCE ops run
    image_batch: int | None = None           # the batch its state advances at

    def entries(self) -> tuple[contract.StateEntry, ...]:
        return tuple(contract.StateEntry(name=v.name, shape=v.shape, dtype=_DTYPES[v.tensor_type],
                                         role=contract.BASE_STATE) for v in self.variables)

    def describe(self) -> str:
        names = ", ".join(f"'{v.label}'" for v in self.variables)
        return (f"the base keeps state in {len(self.variables)} variable(s) ({names}): its images run "
                f"at its own batch {self.image_batch}; each load/infer/train_images call advances "
                "that state like one call of the original; save/restore/initialize include it")


def _op_name(model, op) -> str:
    return model_io.operator_name(model.operatorCodes[op.opcodeIndex])


def _reachable(model, starts, follow_call_once: bool) -> list[int]:
    return model_io.reachable_subgraphs(
        model, starts, lambda op: follow_call_once or effects.code(model, op) != BuiltinOperator.CALL_ONCE)


def _output_label(subgraph, op) -> str:
    outputs = [int(o) for o in (op.outputs if op.outputs is not None else [])]
    return f" producing '{model_io.tensor_name(subgraph.tensors[outputs[0]])}'" if outputs else ""


def _refuse_unreachable_state(model, main: list[int], source: str) -> None:
    """State that save/restore/initialize cannot reach: refused, naming the op."""
    for index in main:
        subgraph = model.subgraphs[index]
        for op in subgraph.operators or []:
            name, variables = _op_name(model, op), effects.variable_inputs(subgraph, op)
            if variables:
                tensor = model_io.tensor_name(subgraph.tensors[variables[0]])
                raise UnsupportedModelError(
                    f"{source}: op {name}{_output_label(subgraph, op)} keeps state between calls in its "
                    f"variable tensor '{tensor}', which save/restore/initialize cannot reach; convert the "
                    "base with its state in resource variables (tf.Variable) or without state")
            if effects.code(model, op) in effects.KERNEL_STATE_OPS:
                raise UnsupportedModelError(
                    f"{source}: op {name}{_output_label(subgraph, op)} keeps a random-generator state "
                    "that advances on every call and cannot be saved or reset; give a base without it")
            if effects.code(model, op) == BuiltinOperator.HASHTABLE_IMPORT:
                raise UnsupportedModelError(
                    f"{source}: op HASHTABLE_IMPORT in subgraph {index} fills a hash table on every call, "
                    "which save/restore/initialize cannot reach; fill it in the base's init subgraph")


def _variable_uses(model, subgraphs: list[int], source: str):
    """(assigned keys in order, {key: [(tensor, where)]} of every value read or assigned)."""
    assigned, values = [], {}
    for index in subgraphs:
        subgraph = model.subgraphs[index]
        handles = {}
        for op in subgraph.operators or []:
            code = effects.code(model, op)
            if code == BuiltinOperator.VAR_HANDLE:
                options = op.builtinOptions
                key = (bytes(options.container or b""), bytes(options.sharedName or b""))
                handles[int(op.outputs[0])] = key
            elif code in (BuiltinOperator.READ_VARIABLE, BuiltinOperator.ASSIGN_VARIABLE):
                handle = int(op.inputs[0])
                if handle not in handles and code == BuiltinOperator.READ_VARIABLE:
                    continue  # a read of a handle passed in: no write, nothing to give a lifecycle
                if handle not in handles:
                    raise UnsupportedModelError(
                        f"{source}: {_op_name(model, op)} in subgraph {index} uses a variable handle "
                        f"'{model_io.tensor_name(subgraph.tensors[handle])}' made outside that subgraph; "
                        "the compiler cannot tell which variable it is")
                key = handles[handle]
                tensor = int(op.outputs[0]) if code == BuiltinOperator.READ_VARIABLE else int(op.inputs[1])
                values.setdefault(key, []).append(subgraph.tensors[tensor])
                if code == BuiltinOperator.ASSIGN_VARIABLE and key not in assigned:
                    assigned.append(key)
    return assigned, values


def _variable(key: tuple[bytes, bytes], tensors: list, source: str) -> BaseVariable:
    container, shared_name = key
    label = (f"{container.decode(errors='replace')}/" if container else "") + shared_name.decode(errors="replace")
    kinds = {(t.type, tuple(model_io.tensor_shape(t))) for t in tensors}
    batch_shaped = next((shape for _, shape in sorted(kinds) if any(d < 0 for d in shape)), None)
    if batch_shaped is not None:
        raise UnsupportedModelError(
            f"{source}: base variable '{label}' has shape {list(batch_shaped)}, which depends on the batch; "
            "its state cannot be saved or restored exactly (convert the base with a fixed batch)")
    if len(kinds) != 1:
        described = ", ".join(f"{model_io.tensor_type_name(k[0])} {list(k[1])}" for k in sorted(kinds))
        raise UnsupportedModelError(f"{source}: base variable '{label}' is read and written as {described}; "
                                    "give it one type and shape")
    tensor_type, shape = kinds.pop()
    if tensor_type not in _DTYPES:
        raise UnsupportedModelError(f"{source}: base variable '{label}' is "
                                    f"{model_io.tensor_type_name(tensor_type)}, which a checkpoint cannot hold")
    variable = label.replace("/", "_")
    return BaseVariable(container, shared_name, contract.base_state_name(variable), tensor_type, shape)


def find_base_state(model: model_io.ModelT, entry: int, source: str = "base") -> BaseState:
    """The variables the base (its entry subgraph, after the cut) writes on every call, with
    the init subgraphs that give them their initial values; refuses what cannot be exact."""
    main = _reachable(model, [entry], follow_call_once=False)
    init_roots = [int(i) for index in main for op in model.subgraphs[index].operators or []
                  if effects.code(model, op) == BuiltinOperator.CALL_ONCE for i in model_io.called_subgraphs(op)]
    init = [i for i in _reachable(model, init_roots, follow_call_once=True) if i not in main]
    _refuse_unreachable_state(model, main, source)
    written, values = _variable_uses(model, main, source)
    if not written:
        return BaseState()
    initialised, init_values = _variable_uses(model, init, source)
    variables = []
    for key in written:
        found = _variable(key, values[key] + init_values.get(key, []), source)
        if key not in initialised:
            raise UnsupportedModelError(
                f"{source}: base variable '{found.label}' is written on every call but gets no initial "
                "value from the base's init subgraph (CALL_ONCE), so its state before the first call "
                "is undefined; convert the base with the variable initialised")
        variables.append(found)
    names = [v.name for v in variables]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise UnsupportedModelError(f"{source}: base variables map to the same state name {clash[0]}; rename them")
    image = model.subgraphs[entry].tensors[model.subgraphs[entry].inputs[0]]
    batch = model_io.tensor_shape(image)[0] if len(model_io.tensor_shape(image)) else 1
    return BaseState(tuple(variables), tuple(sorted(set(init_roots))), batch if batch > 0 else 1)


def check_state_names(state: BaseState, head_names, source: str = "base") -> None:
    """Base state names must not clash with the head's (checkpoints and `save` key by name)."""
    clash = sorted({v.name for v in state.variables} & set(head_names))
    if clash:
        raise InvalidInputError(f"conflicting variable names: the base's state '{clash[0]}' has the name of "
                                "a head variable; rename the head's layers")


def fixed_batches(model: model_io.ModelT, state: BaseState, options, source: str = "base"):
    """The batch pass for a stateful base: its image signatures take its own batch, nothing of
    it is rewritten (batch.fix_signature_batches); a fixed image batch other than its own is
    refused. Returns (model, batch.BatchReport)."""
    from tflite_transfer.compiler.passes import batch  # noqa: PLC0415 (batch imports the checks)

    if options.image_batch not in (None, state.image_batch):
        train = "any" if options.train_batch is None else options.train_batch
        names = ", ".join(f"'{v.label}'" for v in state.variables)
        raise InvalidInputError(
            f"--batch={options.describe()}: {source} keeps state between calls in variable(s) {names}, "
            f"advanced once per call at its own batch {state.image_batch}; use --batch={state.image_batch},{train}")
    return batch.fix_signature_batches(model, state.image_batch, options.train_batch, state.describe())


def _variable_handle(editor: graph.GraphEditor, subgraph, variable: BaseVariable) -> int:
    handle = editor.tensor(subgraph, f"{variable.name}/handle", TensorType.RESOURCE, [])
    editor.op(subgraph, BuiltinOperator.VAR_HANDLE, 1, [], [handle],
              graph.options("VarHandleOptions", container=variable.container, sharedName=variable.shared_name))
    return handle


def _signature(model, key: str):
    return next(s for s in model.signatureDefs if s.signatureKey.decode() == key)


def expose_in_state_signatures(fused, state: BaseState):
    """Adds the base's variables to the fused model's `save` (read), `restore` (assign, after
    the base's CALL_ONCE so a later first call does not re-initialise them) and `initialize`
    (re-runs the base's init subgraphs). `fused`: fuse.FusedModel; returns it, its model edited."""
    if not state.variables:
        return fused
    model, editor = fused.model, graph.GraphEditor(fused.model)
    init = [fused.base_subgraph_map[i] for i in state.init_subgraphs]
    for key in (contract.SAVE, contract.RESTORE):
        subgraph = model.subgraphs[model_io.signature_subgraph(model, key)]
        for index in init:  # runs the init once per interpreter, shared with the base's own CALL_ONCE
            editor.op(subgraph, BuiltinOperator.CALL_ONCE, 1, [], [],
                      graph.options("CallOnceOptions", initSubgraphIndex=index), position=0)
        signature = _signature(model, key)
        for variable in state.variables:
            handle = _variable_handle(editor, subgraph, variable)
            value = editor.tensor(subgraph, variable.name, variable.tensor_type, variable.shape)
            if key == contract.SAVE:
                editor.op(subgraph, BuiltinOperator.READ_VARIABLE, 1, [handle], [value])
                subgraph.outputs = [*[int(t) for t in subgraph.outputs], value]
                signature.outputs.append(graph.tensor_map(variable.name, value))
            else:
                editor.op(subgraph, BuiltinOperator.ASSIGN_VARIABLE, 1, [handle, value], [])
                subgraph.inputs = [*[int(t) for t in subgraph.inputs], value]
                signature.inputs.append(graph.tensor_map(variable.name, value))
    subgraph = model.subgraphs[model_io.signature_subgraph(model, contract.INITIALIZE)]
    condition = editor.tensor(subgraph, "base_state/reset_condition", TensorType.BOOL, [],
                              data=np.array([1], np.uint8).tobytes())
    for index in init:
        editor.op(subgraph, BuiltinOperator.IF, 1, [condition], [],
                  graph.options("IfOptions", thenSubgraphIndex=index, elseSubgraphIndex=index))
    return fused
