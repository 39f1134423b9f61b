"""Re-export of the project's exception family for compiler code."""

from tflite_transfer.runtime.errors import (  # noqa: F401
    CheckpointError,
    InvalidInputError,
    TransferError,
    UnsupportedModelError,
    VerificationError,
)
