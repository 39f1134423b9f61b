"""The server's copy of the compiled model: the federation's starting weights, and the
global head written each round as a checkpoint every runtime restores.

numpy + LiteRT only. A checkpoint holds the model's whole state (what `restore` takes): the
aggregated kernels and biases, and the compiled initial values of everything that never
leaves a device (optimizer slots, step, learning rate).
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from tflite_transfer.runtime import checkpoint
from tflite_transfer.runtime.federated import head


class GlobalModel:
    def __init__(self, model):
        self.metadata = head.typed_metadata(model)
        model.reset()
        self.initial_state = model.get_state()
        self.initial_weights = head.head_weights(model)

    @property
    def fingerprint(self) -> str:
        return self.metadata.fingerprint

    def conform(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The weights in the model's dtypes (Flower's FedOpt strategies compute in float64)."""
        dtypes = {entry.name: entry.numpy_dtype for entry in head.trainable_entries(self.metadata)}
        return {name: np.asarray(value).astype(dtypes.get(name, np.asarray(value).dtype), copy=False)
                for name, value in weights.items()}

    def full_state(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = dict(self.initial_state)
        state.update(head.check_head_weights(self.metadata, self.conform(weights)))
        return state

    def write_checkpoint(self, path, weights: Mapping[str, np.ndarray], server_round: int) -> None:
        """Atomically writes the global head of a round (runtime/checkpoint.py's writer)."""
        checkpoint.write_checkpoint(path, self.full_state(weights), self.fingerprint,
                                    {"federated_round": str(server_round)})

    def score(self, weights: Mapping[str, np.ndarray], bottlenecks, labels) -> tuple[float, float]:
        return head.score(self.metadata, self.conform(weights), bottlenecks, labels)


def round_checkpoint_path(directory, server_round: int) -> str:
    return os.path.join(os.fspath(directory), f"round-{server_round:03d}.ckpt")
