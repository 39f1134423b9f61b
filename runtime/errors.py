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
