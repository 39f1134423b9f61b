"""The contract's user-facing tensors (part of runtime/contract.py, which re-exports them):
the tensor name of each role in the signatures, the description of the model's input, and the
rule a one-hot label row follows. numpy-only, like the contract itself.

Contract version 3 stores the names per model (`names`), so a compiled model can use the names
an existing app already calls (`--names`); versions 1 and 2 used the fixed names of
`TensorNames.fixed`. Signature KEYS (load, infer, train, ...) and state names never change.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

# Roles of the user-facing tensors, in the order of `--names` and of the metadata's `names`.
INPUT_ROLE, BOTTLENECK_ROLE, LABEL_ROLE, LOSS_ROLE, OUTPUT_ROLE = "input", "bottleneck", "label", "loss", "output"
NAME_ROLES = (INPUT_ROLE, BOTTLENECK_ROLE, LABEL_ROLE, LOSS_ROLE, OUTPUT_ROLE)
# Which roles share a signature (so must differ): infer, load, train, train_images.
ROLES_BY_SIGNATURE = {"infer": (INPUT_ROLE, OUTPUT_ROLE), "load": (INPUT_ROLE, BOTTLENECK_ROLE),
                      "train": (BOTTLENECK_ROLE, LABEL_ROLE, LOSS_ROLE),
                      "train_images": (INPUT_ROLE, LABEL_ROLE, LOSS_ROLE)}
# A name any TFLite API, Kotlin map, JS object and JSON key carries unchanged.
_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")

# The input's default name by kind, and the kinds.
IMAGE_KIND, TENSOR_KIND = "image", "tensor"
INPUT_KINDS = (IMAGE_KIND, TENSOR_KIND)
DEFAULT_INPUT_NAMES = {IMAGE_KIND: "image", TENSOR_KIND: "input"}


@dataclasses.dataclass(frozen=True)
class TensorNames:
    """The tensor name of each role: what `load`/`infer`/`train`/`train_images` take and return."""
    input: str = "image"
    bottleneck: str = "bottleneck"
    label: str = "label"
    loss: str = "loss"
    output: str = "probabilities"

    @classmethod
    def fixed(cls, output: str) -> "TensorNames":
        """The names of contract versions 1 and 2 (only `output` varied: probabilities/predictions)."""
        return cls(output=output)

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# Presets of `--names`: the complete names some existing app calls.
# TensorFlow's example app (tensorflow/examples lite/examples/model_personalization,
# TransferLearningHelper.kt): load(feature) -> bottleneck, train(bottleneck, label) -> loss,
# infer(feature) -> output.
NAME_PRESETS = {"tf_example_app": {INPUT_ROLE: "feature", BOTTLENECK_ROLE: "bottleneck", LABEL_ROLE: "label",
                                   LOSS_ROLE: "loss", OUTPUT_ROLE: "output"}}


def names_problems(names: TensorNames, state_names=()) -> list[str]:
    """What is wrong with a set of names ([] when nothing): each empty or not a plain name, two
    roles of one signature sharing a name, or a role named like a state variable (save/restore
    would then show a role's name as a variable's)."""
    problems = []
    chosen = names.as_dict()
    for role, name in chosen.items():
        if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
            problems.append(f"{role} name {name!r} is not a name (a letter or _, then up to 63 "
                            "letters, digits, _ . -)")
    for signature, roles in ROLES_BY_SIGNATURE.items():
        for index, role in enumerate(roles):
            for other in roles[index + 1:]:
                if chosen[role] == chosen[other]:
                    problems.append(f"{role} and {other} are both named {chosen[role]!r} in '{signature}'")
    clashes = sorted({name for name in chosen.values() if name in set(state_names)})
    if clashes:
        problems.append(f"{', '.join(repr(n) for n in clashes)} is also a state variable's name")
    return problems


def input_kind(sample_shape: tuple[int, ...]) -> str:
    """'image' for [height, width, channels] with 1, 3 or 4 channels (per sample), else 'tensor'."""
    return IMAGE_KIND if len(sample_shape) == 3 and sample_shape[-1] in (1, 3, 4) else TENSOR_KIND


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The model's input (the base's input, whatever it is): per-sample shape, dtype, and the
    value range the app feeds when one is known (`base_range`: what the base itself expects;
    the two differ when the compiler scales the input inside the model)."""
    kind: str                                   # 'image' or 'tensor'
    dtype: str                                  # numpy name of the signature input's type
    shape: tuple[int, ...]                      # per sample, without the batch dimension
    range: tuple[float, float] | None = None    # values the app feeds; None: not known
    base_range: tuple[float, float] | None = None

    def problems(self) -> list[str]:
        problems = []
        if self.kind not in INPUT_KINDS:
            problems.append(f"input kind {self.kind!r}")
        if not self.shape or any(d < 1 for d in self.shape):
            problems.append(f"input shape {list(self.shape)}")
        for what, value in (("range", self.range), ("base_range", self.base_range)):
            if value is not None and not range_is_valid(value):
                problems.append(f"input {what} {list(value)}")
        return problems


def range_is_valid(value) -> bool:
    return (len(value) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
            and value[0] < value[1])


# One-hot (or soft) float labels: every row non-negative and summing to 1, since `train`'s
# cross-entropy gradient softmax - target is the true gradient only for such rows. The
# tolerance admits float32 rounding of soft targets (a float32 softmax over 1000 classes sums
# to 1 within ~1e-5) and label smoothing done by the app, and refuses un-normalised rows.
ONE_HOT_SUM_TOLERANCE = 1e-3


# Version 3's part of the metadata record (runtime/contract.py reads and checks the rest).
BOTTLENECK_ADAPTERS = ("flatten", "mean", "max")   # what turns a spatial cut into [batch, features]


def version_3_fields(record: dict) -> dict:
    names = record["names"]
    if not isinstance(names, dict) or sorted(names) != sorted(NAME_ROLES):
        raise ValueError(f"names must give exactly the roles {', '.join(NAME_ROLES)}")
    spec = record["input"]
    adapter = record.get("bottleneck_adapter")
    return {"names": TensorNames(**{role: names[role] for role in NAME_ROLES}),
            "input": InputSpec(kind=str(spec["kind"]), dtype=str(np.dtype(spec["dtype"])),
                               shape=tuple(int(d) for d in spec["shape"]),
                               range=optional_range(spec.get("range")),
                               base_range=optional_range(spec.get("base_range"))),
            "bottleneck_adapter": None if adapter is None else {
                "kind": str(adapter["kind"]), "cut_shape": [int(d) for d in adapter["cut_shape"]]}}


def optional_range(value) -> tuple[float, float] | None:
    return None if value is None else tuple(float(v) for v in value)


def version_3_problems(metadata) -> list[str]:
    problems = names_problems(metadata.tensor_names, metadata.state_names)
    if metadata.tensor_names.output != metadata.output:
        problems.append(f"output {metadata.output!r} is not names.output {metadata.tensor_names.output!r}")
    problems += metadata.input.problems() if metadata.input is not None else ["no input"]
    adapter = metadata.bottleneck_adapter
    if adapter is not None:
        shape = list(adapter["cut_shape"])
        features = (int(np.prod(shape)) if adapter["kind"] == "flatten" else shape[-1]) if shape else 0
        if (adapter["kind"] not in BOTTLENECK_ADAPTERS or len(shape) not in (2, 3) or min(shape) < 1
                or features != metadata.bottleneck_size):
            problems.append(f"bottleneck_adapter {dict(adapter)} for bottleneck_size {metadata.bottleneck_size}")
    return problems


def oldest_version_describing(metadata):
    """The record as the oldest contract version that describes the model exactly: version 2
    when it uses the fixed names, an image input the app feeds unscaled, class ids or float
    targets, and no bottleneck adapter; else as it is. Runtimes released before version 3 (and
    apps built on them) keep opening every model that uses none of version 3's options."""
    spec = metadata.input
    needs_3 = (metadata.tensor_names != TensorNames.fixed(metadata.output) or metadata.label.one_hot
               or metadata.bottleneck_adapter is not None
               or (spec is not None and (spec.kind != IMAGE_KIND or spec.range != spec.base_range)))
    if needs_3 or metadata.contract_version < 3:
        return metadata
    # Version 2 recorded a pixel range for float inputs only (an integer input's dtype bounds it).
    image_range = spec.range if spec is not None and np.dtype(spec.dtype).kind == "f" else None
    return dataclasses.replace(metadata, contract_version=2, names=None, input=None,
                               image_range=image_range)
