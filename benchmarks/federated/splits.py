"""How the clients' images are drawn: k per client, IID or label-skewed.

IID: each client gets k images spread evenly over the 10 classes. Label-skewed (non-IID):
each client sees only `classes_per_client` classes (consecutive classes, starting at a
different class per client so every class is covered), k images split evenly among them.
A client also gets `heldout` images from its own distribution (disjoint from its training
images) that only its `evaluate` scores. Images are drawn without replacement from the pool.
"""

from __future__ import annotations

import numpy as np

from benchmarks.federated.features import CLASSES


def split_clients(labels: np.ndarray, num_clients: int, k: int, heldout: int, skewed: bool,
                  classes_per_client: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per client: (indices trained on, indices held out) into the pool."""
    rng = np.random.default_rng(seed)
    available = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in range(CLASSES)}
    clients = []
    for client in range(num_clients):
        if skewed:
            first = client % CLASSES
            classes = [(first + i) % CLASSES for i in range(classes_per_client)]
        else:
            classes = list(range(CLASSES))
        train = _take(available, classes, k, rng)
        held = _take(available, classes, heldout, rng)
        clients.append((np.array(train), np.array(held)))
    return clients


def _take(available: dict, classes: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """`count` indices spread as evenly as possible over `classes` (remainder to random ones)."""
    per_class = np.full(len(classes), count // len(classes))
    per_class[rng.choice(len(classes), count % len(classes), replace=False)] += 1
    taken = []
    for cls, number in zip(classes, per_class):
        if len(available[cls]) < number:
            raise SystemExit(f"the pool has too few images of class {cls}: raise --pool_per_class")
        taken += [available[cls].pop() for _ in range(number)]
    return taken
