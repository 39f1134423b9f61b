"""The user's options, as the CLI flags and the Python API give them: frozen, keyword-only,
with the one default of each. Imports nothing heavy (no TensorFlow), so the CLI defines and
checks every flag from here before anything slow runs.

The hyper-parameters of losses and optimizers are not listed here: each registry record owns
its own (compiler/head/hyper_parameters.py), and `HeadOptions` gets one field per name, None
meaning "the chosen record's default". The pipeline turns the options into a validated plan
once (compiler/plan.py); nothing downstream validates a flag again.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.head import hyper_parameters, losses, optimizers

DEFAULT_BASE = "mobilenet_v2"
DEFAULT_NUM_CLASSES = 4                  # without --num_classes and --labels


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaseOptions:
    base: str | None = None               # None: the embedded default
    base_output: str | None = None        # tensor (.tflite, SavedModel) or layer (Keras) to cut at
    alpha: float = 1.0
    image_size: int = 224
    base_weights: str | None = None
    calibration_dir: str | None = None
    num_calibration_images: int = 32
    quantize: bool = True


# One --flag and one HeadOptions field per hyper-parameter name the records read.
LOSS_FLAGS = hyper_parameters.flags_of("loss", losses.LOSSES)
OPTIMIZER_FLAGS = hyper_parameters.flags_of("optimizer", optimizers.OPTIMIZERS)
HYPER_PARAMETER_FLAGS = LOSS_FLAGS + OPTIMIZER_FLAGS
if len({flag.name for flag in HYPER_PARAMETER_FLAGS}) != len(HYPER_PARAMETER_FLAGS):
    raise TypeError("a loss and an optimizer hyper-parameter share a name; one flag cannot be both")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _HeadChoices:
    """The head options every compile has; HeadOptions adds the registries' hyper-parameters."""
    head: str = "softmax"
    num_classes: int | None = None       # outputs (classes, or targets for mse); None: len(labels) or 4
    labels: tuple[str, ...] = ()         # optional class names stored in the model
    loss: str = "softmax_cross_entropy"
    optimizer: str = "sgd"
    learning_rate: float | None = None   # None: from the bottleneck scale (passes/feature_scale.py)
    seed: int = 0                        # of the head's initial weights, in [0, MAX_SEED]


HeadOptions = dataclasses.make_dataclass(
    "HeadOptions", [(flag.name, flag.kind | None, dataclasses.field(default=None)) for flag in HYPER_PARAMETER_FLAGS],
    bases=(_HeadChoices,), frozen=True, kw_only=True)
HeadOptions.__module__ = __name__
HeadOptions.__doc__ = ("The head, loss and optimizer options: "
                       + ", ".join(field.name for field in dataclasses.fields(HeadOptions))
                       + ". A hyper-parameter left at None takes the chosen record's default.")

MAX_SEED = 2**32 - 1                     # what numpy, and every RNG a port would use, takes


def given(head_options, flags: tuple[hyper_parameters.Flag, ...]) -> dict:
    """{name: value or None} of these hyper-parameter flags in the options."""
    return {flag.name: getattr(head_options, flag.name) for flag in flags}


# How the compiled model fits an app that already exists, and what the base's input takes
# (contract version 3; checked by compiler/interface.py, BUILD.md "Fitting an existing app").
@dataclasses.dataclass(frozen=True, kw_only=True)
class InterfaceOptions:
    names: str | None = None               # --names: 'tf_example_app' and/or ROLE:NAME pairs; None: defaults
    input_range: str | tuple[float, float] | None = None       # --input_range: the values the app feeds
    base_input_range: str | tuple[float, float] | None = None  # --base_input_range: what the base expects
    label_format: str = "class_ids"        # --label_format: class_ids (int32 [batch]) or one_hot
    bottleneck_adapter: str | None = None  # --bottleneck_adapter: flatten, mean or max (spatial cuts)
    calibration_data: str | None = None    # --calibration_data: a .npy of base inputs to calibrate int8


INTERFACE_DEFAULTS = InterfaceOptions()


# --verify: train steps compared against TensorFlow eager, and the largest relative weight
# difference accepted (measured: 1e-8 to 4e-6 for every optimizer and head).
DEFAULT_VERIFY_STEPS = 10
DEFAULT_VERIFY_TOLERANCE = 1e-5

_ANY = ("any", "dynamic")


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """What the user asked for: a fixed batch for the image signatures and for `train`
    (None: any batch, the default). See compiler/passes/batch.py."""
    image_batch: int | None = None
    train_batch: int | None = None

    def __post_init__(self):
        for name, value in (("IMAGES", self.image_batch), ("TRAIN", self.train_batch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 1):
                raise InvalidInputError(f"--batch: {name} must be a positive integer or 'any', got {value!r}")

    @property
    def dynamic(self) -> bool:
        return self.image_batch is None and self.train_batch is None

    def describe(self) -> str:
        show = lambda b: "any" if b is None else str(b)  # noqa: E731
        return f"{show(self.image_batch)},{show(self.train_batch)}"


def parse_batch_flag(text: str | None) -> BatchOptions:
    """'IMAGES,TRAIN' (e.g. '1,16'; 'any' leaves one dynamic) or None/'' /'dynamic' for the default."""
    if text is None or text.strip().lower() in ("", *_ANY):
        return BatchOptions()
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise InvalidInputError(f"--batch={text!r}: expected IMAGES,TRAIN, two batch sizes such as "
                                "--batch=1,16 (or 'any' for either)")
    values = []
    for name, part in zip(("IMAGES", "TRAIN"), parts):
        if part.lower() in _ANY:
            values.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            value = None
        if value is None or value < 1 or not part.lstrip("+").isdigit():
            raise InvalidInputError(f"--batch={text!r}: {name} {part!r} is not a positive integer "
                                    "(or 'any'); e.g. --batch=1,16")
        values.append(value)
    return BatchOptions(*values)


BASE_DEFAULTS, HEAD_DEFAULTS = BaseOptions(), HeadOptions()
