"""The user's options, as the CLI flags and the Python API give them: frozen, keyword-only,
with the one default of each. Imports nothing heavy, so the CLI reads its flag defaults here.

The pipeline turns them into a validated plan once (pipeline.make_plan); nothing downstream
validates a flag again.
"""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class HeadOptions:
    head: str = "softmax"
    num_classes: int | None = None       # outputs (classes, or targets for mse); None: len(labels) or 4
    labels: tuple[str, ...] = ()         # optional class names stored in the model
    loss: str = "softmax_cross_entropy"
    label_smoothing: float = 0.0
    optimizer: str = "sgd"
    learning_rate: float = 0.001
    momentum: float = 0.9                # momentum
    nesterov: bool = False               # momentum
    beta_1: float = 0.9                  # adam, adamw
    beta_2: float = 0.999                # adam, adamw
    epsilon: float = 1e-7                # adam, adamw
    weight_decay: float = 0.004          # adamw
    seed: int = 0


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

BASE_DEFAULTS, HEAD_DEFAULTS = BaseOptions(), HeadOptions()
