"""tflite-transfer runtime: train, checkpoint and run compiled models without TensorFlow."""

from tflite_transfer.runtime.errors import CheckpointError, InvalidInputError, TransferError  # noqa: F401
from tflite_transfer.runtime.model import TransferModel  # noqa: F401
from tflite_transfer.runtime.inference_model import InferenceModel  # noqa: F401
