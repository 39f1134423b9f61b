"""The options that make a compiled model fit an app that already exists (--names,
--input_range, --label_format, --bottleneck_adapter) and say what the base's input takes
(--base_input_range, --calibration_data): parsed and checked once, before anything slow runs
(no TensorFlow here), into an `InterfacePlan`.

What they become in the model is contract version 3 (runtime/contract_tensors.py): per-model
tensor names, the input described with the value range the app feeds, one-hot labels, the
adapter at a spatial cut.
"""

from __future__ import annotations

import dataclasses
import math

from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.options import InterfaceOptions
from tflite_transfer.runtime import contract


@dataclasses.dataclass(frozen=True)
class InterfacePlan:
    names: dict[str, str]                           # role -> name the user chose (others: defaults)
    input_range: tuple[float, float] | None         # what the app feeds; None: the base's own values
    base_input_range: tuple[float, float] | None    # what the base expects, as the user stated it
    label_format: str                               # contract.LABEL_FORMATS
    bottleneck_adapter: str | None                  # contract.BOTTLENECK_ADAPTERS
    calibration_data: str | None                    # a .npy file of base inputs

    def tensor_names(self, input_kind: str, output: str) -> contract.TensorNames:
        """The model's names: the user's, else the defaults (the input's by its kind)."""
        defaults = {**contract.TensorNames(output=output).as_dict(),
                    contract.NAME_ROLES[0]: contract.DEFAULT_INPUT_NAMES[input_kind]}
        return contract.TensorNames(**{**defaults, **self.names})


def parse_names(text) -> dict[str, str]:
    """'tf_example_app' (a preset) and/or 'ROLE:NAME' pairs, comma-separated; pairs override the
    preset. Also a mapping {role: name} (the Python API)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        items = [f"{role}:{name}" for role, name in text.items()]
    elif isinstance(text, str):
        items = [item.strip() for item in text.split(",")]
    else:
        raise InvalidInputError(f"--names must be a string such as 'input:feature,output:output', got "
                                f"{type(text).__name__}")
    chosen: dict[str, str] = {}
    for item in items:
        role, colon, name = item.partition(":")
        if not colon:
            preset = contract.NAME_PRESETS.get(item)
            if preset is None:
                raise InvalidInputError(
                    f"--names: {item!r} is neither a preset ({', '.join(contract.NAME_PRESETS)}) nor ROLE:NAME; "
                    f"roles are {', '.join(contract.NAME_ROLES)}")
            chosen.update(preset)
            continue
        role, name = role.strip(), name.strip()
        if role not in contract.NAME_ROLES:
            raise InvalidInputError(f"--names: unknown role {role!r} in {item!r}; roles are "
                                    f"{', '.join(contract.NAME_ROLES)}")
        chosen[role] = name
    return chosen


def parse_range(value, flag: str) -> tuple[float, float] | None:
    """'LO,HI' (or a pair of numbers) -> (lo, hi), finite with lo < hi; None/'' -> None."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        low, high = (float(part) for part in parts)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{flag}={value!r}: expected LO,HI, two numbers such as 0,1 or -1,1") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InvalidInputError(f"{flag}={value!r}: expected finite LO < HI")
    return low, high


def check_interface_options(options: InterfaceOptions, labels_are_class_ids: bool,
                            loss_name: str) -> InterfacePlan:
    """Every interface option checked, one line per problem; nothing slow."""
    names = parse_names(options.names)
    for kind in contract.INPUT_KINDS:  # whichever the base turns out to be (checked again then)
        problems = contract.names_problems(contract.TensorNames(**{
            **contract.TensorNames().as_dict(), "input": contract.DEFAULT_INPUT_NAMES[kind], **names}),
            (contract.STEP, contract.LEARNING_RATE))
        if problems:
            raise InvalidInputError(f"--names: {problems[0]}")
    if options.label_format not in contract.LABEL_FORMATS:
        raise InvalidInputError(f"--label_format={options.label_format!r}: choose one of "
                                f"{', '.join(contract.LABEL_FORMATS)}")
    if options.label_format == "one_hot" and not labels_are_class_ids:
        raise InvalidInputError(f"--label_format=one_hot applies to classification losses; --loss={loss_name} "
                                "already takes float targets [batch, num_classes]")
    adapter = options.bottleneck_adapter or None
    if adapter is not None and adapter not in contract.BOTTLENECK_ADAPTERS:
        raise InvalidInputError(f"--bottleneck_adapter={adapter!r}: choose one of "
                                f"{', '.join(contract.BOTTLENECK_ADAPTERS)}")
    calibration = options.calibration_data or None
    if calibration is not None:
        calibration = user_files.check_regular_file(calibration, "--calibration_data",
                                                    "a .npy file of base inputs [n, ...]")
        if not calibration.endswith(".npy"):
            raise InvalidInputError(f"--calibration_data {user_files.shown(calibration)}: expected a .npy "
                                    "file (numpy.save) of base inputs [n, ...]")
    return InterfacePlan(names=names, input_range=parse_range(options.input_range, "--input_range"),
                         base_input_range=parse_range(options.base_input_range, "--base_input_range"),
                         label_format=options.label_format, bottleneck_adapter=adapter,
                         calibration_data=calibration)
