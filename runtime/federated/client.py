"""One device's side of a federated round over a `TransferModel` (numpy + LiteRT, no Flower).

Each round starts from the compiled initial state (`initialize`: fresh optimizer slots, step
and learning rate), writes the federation's head weights through `set_state`, trains local
epochs with the `train` signature over the device's cached bottlenecks, and returns the new
head weights. Only kernels and biases leave the device; images, bottlenecks, labels and
optimizer slots never do.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping

import numpy as np

from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated import head
from tflite_transfer.runtime.federated.client_data import ClientData


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How a device trains in one round (sent by the server in the round's config)."""
    local_epochs: int = 1
    batch_size: int = 16
    seed: int = 0
    learning_rate: float | None = None     # None: the model's compiled learning rate

    @classmethod
    def from_config(cls, config: Mapping) -> "FitConfig":
        try:
            learning_rate = float(config.get("learning-rate", 0.0))
            fit = cls(int(config.get("local-epochs", cls.local_epochs)),
                      int(config.get("batch-size", cls.batch_size)),
                      int(config.get("seed", 0)) + int(config.get("server-round", 0)),
                      learning_rate if learning_rate > 0 else None)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"round config {dict(config)}: {error}") from None
        if fit.local_epochs < 1 or fit.batch_size < 1:
            raise InvalidInputError(f"round config: local-epochs {fit.local_epochs} and batch-size "
                                    f"{fit.batch_size} must be >= 1")
        return fit


@dataclasses.dataclass(frozen=True)
class FitResult:
    weights: dict[str, np.ndarray]    # the head's kernels and biases after local training
    num_examples: int
    train_loss: float                 # mean loss of the last local epoch
    seconds: float


@dataclasses.dataclass(frozen=True)
class EvaluateResult:
    loss: float                       # softmax cross-entropy on the held-out samples
    accuracy: float
    num_examples: int


class FederatedClient:
    """A device in a federation: its compiled model and its cached samples."""

    def __init__(self, model, data: ClientData):
        self.model, self.data = model, data
        self.metadata = head.typed_metadata(model)
        model.clear_samples()
        model.add_bottlenecks(data.bottleneck, data.label)

    @property
    def fingerprint(self) -> str:
        return self.metadata.fingerprint

    def fit(self, weights: Mapping[str, np.ndarray], fingerprint: str, config: FitConfig) -> FitResult:
        head.check_fingerprint(fingerprint, self.fingerprint, "fit")
        head.check_head_weights(self.metadata, weights)   # refuse before any state changes
        start = time.perf_counter()
        self.model.reset()
        head.set_head_weights(self.model, weights)
        if config.learning_rate is not None:
            self.model.set_learning_rate(config.learning_rate)
        losses = self.model.fit(epochs=config.local_epochs, batch_size=config.batch_size,
                                shuffle=True, seed=config.seed, progress=False,
                                imprint=False)   # FedAvg: every client starts from the server's weights
        return FitResult(head.head_weights(self.model), self.model.num_samples, float(losses[-1]),
                         time.perf_counter() - start)

    def evaluate(self, weights: Mapping[str, np.ndarray], fingerprint: str) -> EvaluateResult:
        """Scores the federation's head on the held-out samples (nothing is trained)."""
        head.check_fingerprint(fingerprint, self.fingerprint, "evaluate")
        arrays = head.check_head_weights(self.metadata, weights)
        if not len(self.data.heldout_label):
            raise InvalidInputError("evaluate: this device has no held-out samples")
        loss, accuracy = head.score(self.metadata, arrays, self.data.heldout_bottleneck,
                                    self.data.heldout_label)
        return EvaluateResult(loss, accuracy, len(self.data.heldout_label))
