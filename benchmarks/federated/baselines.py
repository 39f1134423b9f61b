"""What federation is compared with, on the same compiled model and the same SGD step:
each client training alone on its own k images (local-only), and one model trained on the
union of every client's images (centralized). Both get as many local epochs as a client gets
over the whole federation (rounds x local epochs), then are scored on the global held-out set
and (local-only) on the client's own held-out images."""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.federated import head
from tflite_transfer.runtime.federated.client_data import ClientData


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    epochs: int
    batch_size: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Scores:
    global_accuracy: float       # on the global held-out set (every class)
    global_loss: float
    own_accuracy: float | None   # on the client's own held-out images (its label distribution)


def train_alone(model: TransferModel, bottleneck, label, plan: TrainingPlan) -> dict[str, np.ndarray]:
    model.reset()
    model.clear_samples()
    model.add_bottlenecks(bottleneck, label)
    model.fit(epochs=plan.epochs, batch_size=plan.batch_size, seed=plan.seed, progress=False)
    return head.head_weights(model)


def local_only(model: TransferModel, clients: list[ClientData], test: ClientData, plan: TrainingPlan) -> list[Scores]:
    metadata = head.typed_metadata(model)
    scores = []
    for index, client in enumerate(clients):
        weights = train_alone(model, client.bottleneck, client.label, dataclasses.replace(plan, seed=plan.seed + index))
        loss, accuracy = head.score(metadata, weights, test.heldout_bottleneck, test.heldout_label)
        _, own = head.score(metadata, weights, client.heldout_bottleneck, client.heldout_label)
        scores.append(Scores(accuracy, loss, own))
    return scores


def centralized(model: TransferModel, clients: list[ClientData], test: ClientData, plan: TrainingPlan) -> Scores:
    weights = train_alone(model, np.concatenate([c.bottleneck for c in clients]),
                          np.concatenate([c.label for c in clients]), plan)
    loss, accuracy = head.score(head.typed_metadata(model), weights, test.heldout_bottleneck, test.heldout_label)
    return Scores(accuracy, loss, None)


def own_accuracy(model: TransferModel, weights, clients: list[ClientData]) -> list[float]:
    """A global head scored on each client's own held-out images."""
    metadata = head.typed_metadata(model)
    return [head.score(metadata, weights, c.heldout_bottleneck, c.heldout_label)[1] for c in clients]
