"""What leaves a device: the head's trainable tensors, chosen by their contract role.

numpy only. The parameters of a federation are the `kernel` and `bias` entries of the
model's state (`contract.StateEntry.role`); optimizer slots, the step counter and the
learning rate stay on the device. Incoming parameters are checked name by name and then
written through `TransferModel.set_state`, which validates shape, dtype and NaN/Inf, so a
bad update changes nothing.
"""

from __future__ import annotations

import json

import numpy as np

from tflite_transfer.runtime import contract
from tflite_transfer.runtime.errors import InvalidInputError, UnsupportedModelError

TRAINABLE_ROLES = (contract.KERNEL, contract.BIAS)


def typed_metadata(model) -> contract.ModelMetadata:
    """The model's metadata as the contract's typed record (v1 metadata is upgraded)."""
    metadata = model.metadata
    if isinstance(metadata, contract.ModelMetadata):
        return metadata
    return contract.ModelMetadata.from_json(json.dumps(dict(metadata)), source="model metadata")


def trainable_entries(metadata: contract.ModelMetadata) -> tuple[contract.StateEntry, ...]:
    """The state entries a federation averages: kernels and biases, in state order."""
    return tuple(entry for entry in metadata.state if entry.role in TRAINABLE_ROLES)


def head_weights(model) -> dict[str, np.ndarray]:
    """The head's kernels and biases as the model's `save` returns them."""
    state = model.get_state()
    return {entry.name: state[entry.name] for entry in trainable_entries(typed_metadata(model))}


def check_head_weights(metadata: contract.ModelMetadata, weights) -> dict[str, np.ndarray]:
    """The weights as arrays if they are exactly the head's tensors; else InvalidInputError."""
    expected = {entry.name: entry for entry in trainable_entries(metadata)}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise InvalidInputError(
            f"federated parameters: missing {missing}, unexpected {extra}; a federation sends "
            f"exactly the head's kernels and biases {sorted(expected)}")
    arrays = {}
    for name, entry in expected.items():
        value = np.asarray(weights[name])
        if value.shape != entry.shape or value.dtype != entry.numpy_dtype:
            raise InvalidInputError(
                f"federated parameter '{name}': {value.dtype} {list(value.shape)}, the model "
                f"holds {entry.dtype} {list(entry.shape)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InvalidInputError(f"federated parameter '{name}': contains NaN or Inf")
        arrays[name] = value
    return arrays


def set_head_weights(model, weights) -> None:
    """Writes the head's kernels and biases; slots, step and learning rate are kept.

    Everything is checked before the model is touched (here and in `set_state`)."""
    arrays = check_head_weights(typed_metadata(model), weights)
    state = model.get_state()
    state.update(arrays)
    model.set_state(state)


def check_fingerprint(expected: str, actual: str, where: str) -> None:
    """Refuses parameters meant for another compiled model, in one line saying what to do."""
    if not isinstance(expected, str) or expected != actual:
        raise InvalidInputError(
            f"{where}: the federation trains model fingerprint {str(expected)[:12]}..., this "
            f"device holds {actual[:12]}...; install the federation's .tflite file on this "
            "device (or join the federation for this model) - nothing was changed")


def head_logits(metadata: contract.ModelMetadata, weights, bottlenecks: np.ndarray) -> np.ndarray:
    """Logits of a single-layer head ([units, inputs] kernel + bias) on cached bottlenecks.

    What `infer` computes after `load`, in float64 numpy, so held-out samples can be scored
    from their cached bottlenecks without running the base again."""
    kernels = [e for e in trainable_entries(metadata) if e.role == contract.KERNEL]
    biases = [e for e in trainable_entries(metadata) if e.role == contract.BIAS]
    if len(kernels) != 1 or len(biases) != 1 or kernels[0].layer != biases[0].layer:
        raise UnsupportedModelError(
            "federated evaluation on cached bottlenecks needs a single-layer head "
            f"(--head=softmax); this model has kernels {[e.name for e in kernels]}")
    kernel = np.asarray(weights[kernels[0].name], np.float64)
    bias = np.asarray(weights[biases[0].name], np.float64)
    return np.asarray(bottlenecks, np.float64) @ kernel.T + bias


def score(metadata: contract.ModelMetadata, weights, bottlenecks, labels) -> tuple[float, float]:
    """(mean softmax cross-entropy, accuracy) of the head on labelled bottlenecks."""
    if not metadata.label.class_ids:
        raise UnsupportedModelError("federated evaluation scores classifiers; this model's loss is "
                                    f"{metadata.loss!r}")
    labels = np.asarray(labels)
    logits = head_logits(metadata, weights, bottlenecks)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probabilities[np.arange(len(labels)), labels].mean())
    return loss, float(np.mean(logits.argmax(axis=1) == labels))
