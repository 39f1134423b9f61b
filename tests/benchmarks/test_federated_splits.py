"""The federated benchmark's client splits: k images each, disjoint, IID or label-skewed."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.federated.splits import split_clients


@pytest.mark.parametrize("skewed", [False, True])
def test_clients_get_k_disjoint_images_of_the_right_classes(skewed):
    labels = np.repeat(np.arange(10), 60).astype(np.int32)
    clients = split_clients(labels, num_clients=20, k=20, heldout=6, skewed=skewed, classes_per_client=2, seed=0)
    used = np.concatenate([np.concatenate([train, held]) for train, held in clients])
    assert len(used) == len(set(used.tolist())) == 20 * 26
    for index, (train, held) in enumerate(clients):
        assert len(train) == 20 and len(held) == 6
        classes = set(labels[train].tolist())
        if skewed:
            assert classes == {index % 10, (index + 1) % 10} and set(labels[held].tolist()) <= classes
            assert np.bincount(labels[train], minlength=10).max() == 10
        else:
            assert classes == set(range(10)) and np.bincount(labels[train], minlength=10).max() == 2


def test_a_pool_too_small_is_one_clear_error():
    labels = np.repeat(np.arange(10), 3).astype(np.int32)
    with pytest.raises(SystemExit, match="pool_per_class"):
        split_clients(labels, num_clients=5, k=20, heldout=0, skewed=False, classes_per_client=2, seed=0)
