"""The model's `tflite_transfer` metadata record (contract.ModelMetadata), built from what
the compiler made: state entries with their roles, the label spec, the fingerprint.

The digest field holds contract.DIGEST_PLACEHOLDER until the pipeline's last step stamps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from tflite_transfer.compiler.errors import InvalidInputError, VerificationError
from tflite_transfer.runtime import contract


def state_entries(head, initial_state: dict[str, np.ndarray], slot_names) -> tuple[contract.StateEntry, ...]:
    """One StateEntry per variable `save` returns, in the head's order, with its role.

    Roles come from how the names were built (contract.weight_name / slot_name over the head's
    layers and the optimizer's slots), never from taking a name apart."""
    roles: dict[str, dict] = {contract.STEP: {"role": contract.STEP},
                              contract.LEARNING_RATE: {"role": contract.LEARNING_RATE}}
    for layer in head.layers:
        for kind in (contract.KERNEL, contract.BIAS):
            weight = contract.weight_name(layer.name, kind)
            roles[weight] = {"role": kind, "layer": layer.name}
            for slot in slot_names:
                roles[contract.slot_name(weight, slot)] = {"role": contract.SLOT, "layer": layer.name,
                                                           "slot": slot, "of": weight}
    entries = []
    for name, value in initial_state.items():
        if name not in roles:
            raise VerificationError(f"state variable '{name}' has no role in the contract")
        entries.append(contract.StateEntry(name=name, shape=tuple(int(d) for d in value.shape),
                                           dtype=str(value.dtype), **roles[name]))
    return tuple(entries)


def fingerprint(contract_fields: dict, initial_state: dict[str, np.ndarray]) -> str:
    """Identifies a compiled model for checkpoints: its contract and initial weights."""
    digest = hashlib.sha256(json.dumps(contract_fields, sort_keys=True).encode())
    for name in sorted(initial_state):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(initial_state[name]).tobytes())
    return digest.hexdigest()


def build_metadata(*, base, bottleneck_size: int, training_head, labels: tuple[str, ...],
                   image_batch: int | None = None, train_batch: int | None = None,
                   input_spec: contract.InputSpec, names: contract.TensorNames | None = None,
                   adapter: dict | None = None) -> contract.ModelMetadata:
    """The metadata record of a fused model, with the digest placeholder, as the oldest
    contract version that describes it (contract.oldest_version_describing)."""
    head, loss, optimizer = training_head.head, training_head.loss, training_head.optimizer
    state = state_entries(head, training_head.initial_state, optimizer.slot_suffixes)
    label = loss.label(head.num_outputs)
    names = names or contract.TensorNames(output=loss.output_name)
    problems = contract.names_problems(names, tuple(entry.name for entry in state))
    if problems:
        raise InvalidInputError(f"--names: {problems[0]}")
    metadata = contract.oldest_version_describing(contract.ModelMetadata(
        bottleneck_size=bottleneck_size, num_outputs=head.num_outputs, loss=loss.name,
        output=names.output, label=label, state=state, fingerprint="",
        optimizer=dataclasses.asdict(optimizer), labels=tuple(labels),
        label_smoothing=loss.label_smoothing,
        head={"kind": head.kind, "description": head.description},
        base={"description": base.description, "synthetic_weights": base.synthetic_weights},
        image_batch=image_batch, train_batch=train_batch, model_digest=contract.DIGEST_PLACEHOLDER,
        names=names, input=input_spec, bottleneck_adapter=adapter))
    identity = {
        "contract_version": min(metadata.contract_version, 2),  # the state is as version 2 defined it
        "signatures": list(contract.SIGNATURES),
        "bottleneck_size": bottleneck_size,
        "num_outputs": head.num_outputs,
        "loss": loss.name,
        "output": loss.output_name,                # what infer returns, whatever its name
        # The label as class ids even for one-hot rows (--label_format changes the call, not the state).
        "label": dataclasses.asdict(contract.LabelSpec.for_loss(loss.labels_are_class_ids, head.num_outputs)),
        "state": [dataclasses.asdict(entry) for entry in state],
    }  # not the batches: a checkpoint fits a model whatever batch its signatures take
    if adapter is not None:  # mean and max pooling give features of one size and different meaning
        identity["bottleneck_adapter"] = adapter["kind"]
    # Not the names, the input range nor the label format either: they change how the app calls
    # the model, not what its state means, so a checkpoint moves between such models.
    return dataclasses.replace(metadata, fingerprint=fingerprint(identity, training_head.initial_state))

