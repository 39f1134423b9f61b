"""The op-version lowering pass: every op code at the lowest version its kernel semantics
need, and `min_runtime_version` telling the truth.

Old runtimes refuse a model by op VERSION, not op type: TF 2.12 loads ADD up to version 4 and
fails on version 5 with "Didn't find op for builtin opcode 'ADD' version '5' ... Are you using
an old TFLite binary with a newer model?" (../shared/NOTES-tflite.md). Kernels never read the
version: it only selects a registration, so an op stamped higher than its tensors and options
need runs unchanged at the lower version, in every runtime that has it. The rules are in
op_version_rules.py, the runtime table in runtime_versions.py.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.passes.op_version_rules import required_version
from tflite_transfer.compiler.passes.runtime_versions import min_runtime_version, set_min_runtime_version


@dataclasses.dataclass(frozen=True)
class VersionChange:
    op: str
    from_version: int
    to_version: int
    ops: int                                  # operators that moved
    subgraphs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class VersionReport:
    changes: tuple[VersionChange, ...]
    no_rule: tuple[str, ...]                  # ops kept at their version: no rule here
    above_declared: tuple[str, ...]           # rule asks more than the file says: kept as declared
    op_codes_before: int
    op_codes_after: int
    versions: dict[str, tuple[int, ...]]      # op name -> versions present after lowering
    min_runtime_version: str                  # from the lowered versions (runtime_version.cc)


def lower_op_versions(model: model_io.ModelT, frozen_subgraphs: Iterable[int] = ()) -> VersionReport:
    """Sets every op to the lowest version its tensors and options need (never higher than the
    version it has), splits or merges op-code entries accordingly and drops unused ones (the
    interpreter resolves every entry of the table, used or not). Ops in `frozen_subgraphs` keep
    their version. Mutates `model`."""
    frozen = set(frozen_subgraphs)
    before = len(model.operatorCodes or [])
    new_codes: list[model_io.schema.OperatorCodeT] = []
    index_of: dict[tuple, int] = {}
    origin: dict[int, int] = {}              # new entry -> the first old entry it came from
    moved: dict[tuple, list[int]] = {}
    no_rule, above = set(), set()
    assignments = []
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        for op in subgraph.operators or []:
            op_code = model.operatorCodes[op.opcodeIndex]
            declared = op_code.version or 1
            version = declared
            if subgraph_index not in frozen:
                needed = required_version(model, subgraph, op)
                if needed is None:
                    no_rule.add(model_io.operator_name(op_code))
                elif needed > declared:
                    above.add(f"{model_io.operator_name(op_code)} v{declared} (rule: v{needed})")
                else:
                    version = needed
            lowered = model_io.normalized_op_code(op_code)
            lowered.version = version
            key = model_io.op_code_key(lowered)
            if key not in index_of:
                index_of[key] = len(new_codes)
                new_codes.append(lowered)
            origin[index_of[key]] = min(origin.get(index_of[key], op.opcodeIndex), op.opcodeIndex)
            assignments.append((op, index_of[key]))
            if version != declared:
                moved.setdefault((model_io.operator_name(op_code), declared, version), []).append(subgraph_index)
    # The new table in the old table's order (split entries by version): a model that needs
    # no change keeps its table as it was. Unused entries are gone (none is assigned).
    order = sorted(range(len(new_codes)), key=lambda i: (origin[i], new_codes[i].version))
    position = {old: new for new, old in enumerate(order)}
    graph.set_op_code_table(model, [new_codes[i] for i in order],
                            [(op, position[index]) for op, index in assignments])
    changes = tuple(VersionChange(name, old, new, len(where), tuple(sorted(set(where))))
                    for (name, old, new), where in sorted(moved.items()))
    versions: dict[str, set[int]] = {}
    for op_code in model.operatorCodes:
        versions.setdefault(model_io.operator_name(op_code), set()).add(op_code.version)
    return VersionReport(changes, tuple(sorted(no_rule)), tuple(sorted(above)), before,
                         len(model.operatorCodes), {k: tuple(sorted(v)) for k, v in sorted(versions.items())},
                         min_runtime_version(model))


def lower_and_declare(model: model_io.ModelT) -> VersionReport:
    """The pipeline's pass: lowers every op and writes the matching min_runtime_version."""
    report = lower_op_versions(model)
    set_min_runtime_version(model, report.min_runtime_version)
    return report
