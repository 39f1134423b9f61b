"""The hyper-parameters a registry record (a loss, an optimizer) reads: each one's flag name,
its one default, its check and its help, held by the record itself.

From these the CLI defines one flag per name (compiler/options.py: the flag list, defaults and
help all come from the records) and `HeadOptions` has one field per name; a field left at None
means "not given": the chosen record then uses its own default. A value given for a record
that does not read it is refused, naming the records that do.

TensorFlow-free: the CLI imports this before any flag is checked.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Mapping, Protocol

from tflite_transfer.compiler.errors import InvalidInputError


@dataclasses.dataclass(frozen=True)
class Requirement:
    """What a value must be, as a test and as the words the error uses."""
    words: str                          # e.g. "in [0, 1)": "--momentum must be in [0, 1), got 1.0"
    test: Callable[[float], bool]


IN_UNIT_INTERVAL = Requirement("in [0, 1)", lambda value: 0.0 <= value < 1.0)
POSITIVE_FINITE = Requirement("a finite number > 0", lambda value: value > 0 and math.isfinite(value))
NON_NEGATIVE_FINITE = Requirement("a finite number >= 0", lambda value: value >= 0 and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class HyperParameter:
    """One hyper-parameter of one record. Records may share a name (momentum, epsilon) with
    their own default and check; they must agree on its type (it is one flag)."""
    name: str                           # the flag (--name) and the HeadOptions field
    default: bool | float               # its type is the flag's type
    help: str                           # what it is, for --help
    requirement: Requirement | None = None

    @property
    def kind(self) -> type:
        return type(self.default)

    def resolve(self, given, chosen: str) -> bool | float:
        """The value to use: `given`, checked, or this record's default when None.
        `chosen`: the record's flag, e.g. '--optimizer=adam', for messages."""
        if given is None:
            return self.default
        if self.kind is bool:
            if not isinstance(given, bool):
                raise InvalidInputError(f"--{self.name} must be true or false, got {given!r}")
            return given
        if isinstance(given, bool) or not isinstance(given, (int, float)):
            raise InvalidInputError(f"--{self.name} must be a number, got {given!r}")
        value = float(given)
        if self.requirement is not None and not self.requirement.test(value):
            raise InvalidInputError(f"--{self.name} must be {self.requirement.words} for {chosen}, got {given}")
        return value


class Record(Protocol):
    """What the helpers below read of a registry record (optimizers.Optimizer, losses.LossRecord)."""
    name: str
    hyper_parameters: tuple[HyperParameter, ...]


def resolve(registry: Mapping[str, Record], flag: str, chosen: str,
            given: Mapping[str, object]) -> dict[str, bool | float]:
    """The values record `chosen` of `registry` uses, from `given` (name -> value or None, for
    every name of the registry): checked, defaults filled in. `flag`: 'optimizer' or 'loss'."""
    record = registry[chosen]
    reads = {parameter.name for parameter in record.hyper_parameters}
    for name, value in given.items():
        if value is None or name in reads:
            continue
        readers = [other.name for other in registry.values() if name in {p.name for p in other.hyper_parameters}]
        if not readers:
            raise InvalidInputError(f"no --{flag} reads a hyper-parameter named '{name}'")
        raise InvalidInputError(f"--{name} applies to {', '.join(readers)} only, not --{flag}={chosen}")
    return {parameter.name: parameter.resolve(given.get(parameter.name), f"--{flag}={chosen}")
            for parameter in record.hyper_parameters}


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag (and HeadOptions field) derived from the records that read it."""
    name: str
    kind: type                          # bool or float
    help: str


def flags_of(flag: str, registry: Mapping[str, Record]) -> tuple[Flag, ...]:
    """One Flag per hyper-parameter name over the registry, in the records' order; its help
    says what it is, what it must be and each reader's default."""
    by_name: dict[str, list[tuple[str, HyperParameter]]] = {}
    for record in registry.values():
        for parameter in record.hyper_parameters:
            by_name.setdefault(parameter.name, []).append((record.name, parameter))
    flags = []
    for name, readers in by_name.items():
        kinds = {parameter.kind for _, parameter in readers}
        if len(kinds) != 1:
            raise TypeError(f"hyper-parameter '{name}' has several types in the {flag} registry: {kinds}")
        helps = _unique(parameter.help for _, parameter in readers)
        requirements = _unique(parameter.requirement.words for _, parameter in readers if parameter.requirement)
        text = "; ".join(helps)
        text = text[:1].upper() + text[1:] + (f", {' / '.join(requirements)}" if requirements else "")
        defaults = _unique(_shown(parameter.default) for _, parameter in readers)
        if len(defaults) == 1:
            read_by = f"{', '.join(record for record, _ in readers)} (default {defaults[0]})"
        else:
            read_by = ", ".join(f"{record} (default {_shown(parameter.default)})" for record, parameter in readers)
        flags.append(Flag(name, kinds.pop(), f"{text}. Read by --{flag}={read_by}."))
    return tuple(flags)


def describe(record: Record) -> str:
    """'reads --beta_1, --beta_2': the flags a record reads, for its line in --help ('' for none)."""
    if not record.hyper_parameters:
        return ""
    return "reads " + ", ".join("--" + parameter.name for parameter in record.hyper_parameters)


def shown(values: Mapping[str, bool | float]) -> str:
    """'momentum 0.9, nesterov': resolved values for the summary."""
    parts = []
    for name, value in values.items():
        if isinstance(value, bool):
            parts.append(name if value else f"no {name}")
        else:
            parts.append(f"{name} {value:g}")
    return ", ".join(parts)


def _shown(default: bool | float) -> str:
    return str(default).lower() if isinstance(default, bool) else f"{default:g}"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
