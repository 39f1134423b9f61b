"""The options -> one validated plan, before anything slow runs.

Every flag value is checked here (head, loss and optimizer with their hyper-parameters, labels,
seed, batches, --verify options; the base options and the files they name), by the registry
records that own them, before a base is loaded or converted. TensorFlow-free for every head but
`keras:FILE` (reading that file needs Keras): the CLI refuses a bad flag in about a second.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from tflite_transfer.compiler import user_files
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.head import heads, losses, optimizers
from tflite_transfer.compiler.interface import InterfacePlan, check_interface_options
from tflite_transfer.compiler.options import (DEFAULT_NUM_CLASSES, DEFAULT_VERIFY_STEPS, DEFAULT_VERIFY_TOLERANCE,
                                              LOSS_FLAGS, MAX_SEED, OPTIMIZER_FLAGS, BaseOptions, BatchOptions,
                                              InterfaceOptions, given)


PLACEHOLDER_LEARNING_RATE = 0.001


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompilePlan:
    """Everything a compile needs, validated: built once by make_plan."""
    head: heads.HeadChoice               # the --head flag, read (its builder needs the bottleneck size)
    num_classes: int
    labels: tuple[str, ...]
    loss: losses.LossSpec
    optimizer: optimizers.OptimizerSpec
    seed: int
    verify_steps: int                    # 0: no --verify
    verify_tolerance: float
    batch: BatchOptions                  # fixed signature batches (--batch); default any
    interface: InterfacePlan             # names, input range, label format, adapter (compiler/interface.py)
    learning_rate_from_features: bool = False   # no --learning_rate: passes/feature_scale.py sets it


def make_plan(head_options, *, verify_steps: int = DEFAULT_VERIFY_STEPS,
              verify: bool = True, verify_tolerance: float = DEFAULT_VERIFY_TOLERANCE,
              batch_options: BatchOptions = BatchOptions(),
              interface_options: InterfaceOptions = InterfaceOptions()) -> CompilePlan:
    """Validates every head, loss, optimizer and check option once (cheap: before minutes of
    conversion are spent). `verify=False` (--noverify) runs no train steps, but a bad
    --verify_steps is still refused: a flag value is valid or not whatever else is given."""
    labels = _checked_labels(head_options.labels)
    num_classes = head_options.num_classes
    if num_classes is None:
        num_classes = len(labels) or DEFAULT_NUM_CLASSES
    if not _is_integer(num_classes):
        raise InvalidInputError(f"--num_classes must be an integer, got {num_classes!r}")
    loss = losses.build_loss(head_options.loss, **given(head_options, LOSS_FLAGS))
    interface = check_interface_options(interface_options, loss.labels_are_class_ids, loss.name)
    loss = losses.build_loss(head_options.loss, interface.label_format, **given(head_options, LOSS_FLAGS))
    losses.check_num_outputs(loss, num_classes)
    if labels and len(labels) != num_classes:
        raise InvalidInputError(f"{len(labels)} labels given for --num_classes={num_classes}")
    # Without --learning_rate the rate comes from the bottleneck's scale (passes/feature_scale.py,
    # once the base is cut); the placeholder only lets the hyper-parameters be checked now.
    from_features = head_options.learning_rate is None
    optimizer = optimizers.build_optimizer(
        head_options.optimizer, PLACEHOLDER_LEARNING_RATE if from_features else head_options.learning_rate,
        **given(head_options, OPTIMIZER_FLAGS))
    seed = head_options.seed
    if not _is_integer(seed) or not 0 <= seed <= MAX_SEED:
        raise InvalidInputError(f"--seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    head = heads.choose_head(head_options.head)
    if not _is_integer(verify_steps) or verify_steps < 0:
        raise InvalidInputError(f"--verify_steps must be >= 0, got {verify_steps}")
    if not (verify_tolerance > 0 and math.isfinite(verify_tolerance)):
        raise InvalidInputError(f"--verify_tolerance must be a finite number > 0, got {verify_tolerance}")
    if not isinstance(batch_options, BatchOptions):
        raise InvalidInputError(f"batch_options must be a BatchOptions, got {type(batch_options).__name__}")
    return CompilePlan(head=head, num_classes=int(num_classes), labels=labels, loss=loss, optimizer=optimizer,
                       seed=int(seed), verify_steps=int(verify_steps) if verify else 0,
                       verify_tolerance=verify_tolerance, batch=batch_options, interface=interface,
                       learning_rate_from_features=from_features)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _checked_labels(labels) -> tuple[str, ...]:
    """Class names as stored in the model: non-empty single-line strings, each once."""
    if isinstance(labels, str):
        raise InvalidInputError("labels must be a sequence of class names, not one string")
    labels = tuple(labels)
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip() or any(c in label for c in "\r\n"):
            raise InvalidInputError(f"labels: class {index} is {label!r}; a class name is a non-empty "
                                    "line of text")
        if label in seen:
            raise InvalidInputError(f"labels: class name {label!r} is given twice (classes {seen[label]} "
                                    f"and {index}); class names must differ")
        seen[label] = index
    return labels


def check_base_options(base_options: BaseOptions, output: str | None = None) -> None:
    """Cheap checks of the base options, the files they name and the output location
    (user_files.py), before minutes of conversion are spent."""
    if not (base_options.alpha > 0 and math.isfinite(base_options.alpha)):
        raise InvalidInputError(f"--alpha must be a finite number > 0, got {base_options.alpha}")
    if base_options.image_size < 32:
        raise InvalidInputError(f"--image_size must be >= 32, got {base_options.image_size}")
    if base_options.num_calibration_images < 1:
        raise InvalidInputError(f"--num_calibration_images must be >= 1, got {base_options.num_calibration_images}")
    if base_options.calibration_dir is not None:
        user_files.check_directory(base_options.calibration_dir, "--calibration_dir",
                                   "a folder of .jpg/.png/.bmp images")
    if base_options.base_weights is not None:
        user_files.check_regular_file(base_options.base_weights, "--base_weights",
                                      "a .keras/.h5/.weights.h5 file")
    if output is not None:
        user_files.check_output_file(output)
