"""The one exception family of tflite-transfer.

It lives in the runtime because the runtime must import without TensorFlow; the compiler
reuses it. Messages name the file, tensor, shape or dtype involved and say what to do.
"""


class TransferError(Exception):
    """Base class of every error tflite-transfer raises on purpose (the CLI prints one line)."""


class InvalidInputError(TransferError):
    """A user-supplied file, flag, tensor or value is unusable (wrong type, shape, range...)."""


class UnsupportedModelError(TransferError):
    """The model is valid TFLite but uses something we cannot compile or run (op, layout...)."""


class VerificationError(TransferError):
    """A built-in check failed: non-builtin op, base bytes changed, numerics off the reference."""


class CheckpointError(TransferError):
    """A checkpoint file is missing, truncated, corrupt, or belongs to another model."""


class TrainingDivergedError(VerificationError):
    """`fit` stopped: the loss rose past the divergence threshold (runtime/training_watch.py) or
    became NaN/Inf; the weights were rolled back. `losses` holds the epoch losses up to the
    stop, `stable_learning_rate` the bound for the cached samples (None when none applies)."""

    def __init__(self, message: str, losses: list[float] | None = None,
                 stable_learning_rate: float | None = None):
        super().__init__(message)
        self.losses = list(losses or [])
        self.stable_learning_rate = stable_learning_rate
