"""The model's `tflite_transfer` metadata record (contract.ModelMetadata), built from what
the compiler made: state entries with their roles, the label spec, the fingerprint.

Passes change the typed record (the pipeline's Build.metadata); `write_metadata` serializes the
final record into the model once, when the bytes are written. The digest field holds
contract.DIGEST_PLACEHOLDER until the pipeline's last step stamps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from tflite_transfer.compiler.errors import InvalidInputError, VerificationError
from tflite_transfer.compiler.flatbuffer import graph
from tflite_transfer.runtime import contract


def state_entries(head, initial_state: dict[str, np.ndarray], slot_names) -> tuple[contract.StateEntry, ...]:
    """One StateEntry per variable `save` returns, in order, with its role: the contract's
    layout (contract.state_layout) over the head's layers and the optimizer's slots, checked
    against the variables the training graph made."""
    entries = contract.state_layout(head.layer_shapes, slot_names)
    made = [(name, tuple(int(d) for d in value.shape), str(value.dtype)) for name, value in initial_state.items()]
    expected = [(entry.name, entry.shape, entry.dtype) for entry in entries]
    if made != expected:
        index = next(i for i in range(max(len(made), len(expected))) if made[i:i + 1] != expected[i:i + 1])
        raise VerificationError(f"state variable {index}: the head made {made[index:index + 1] or 'none'}, "
                                f"the contract's layout expects {expected[index:index + 1] or 'none'}")
    return entries


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
                   adapter: dict | None = None,
                   base_state: tuple[contract.StateEntry, ...] = ()) -> contract.ModelMetadata:
    """The metadata record of a fused model, with the digest placeholder, as the oldest
    contract version that describes it (contract.oldest_version_describing). `base_state`: the
    base's own variables (role contract.BASE_STATE, compiler/passes/base_state.py), after the head's."""
    head, loss, optimizer = training_head.head, training_head.loss, training_head.optimizer
    state = state_entries(head, training_head.initial_state, optimizer.slot_suffixes) + tuple(base_state)
    label = loss.label(head.num_outputs)
    names = names or contract.TensorNames(output=loss.output_name)
    problems = contract.names_problems(names, tuple(entry.name for entry in state))
    if problems:
        raise InvalidInputError(f"--names: {problems[0]}")
    metadata = contract.oldest_version_describing(contract.ModelMetadata(
        bottleneck_size=bottleneck_size, num_outputs=head.num_outputs, loss=loss.name,
        output=names.output, label=label, state=state, fingerprint="",
        optimizer=optimizer.to_record(), labels=tuple(labels),
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


def write_metadata(model, metadata: contract.ModelMetadata) -> None:
    """The one writer of the contract metadata entry (compact JSON: the digest's byte search
    expects ModelMetadata.to_json's form)."""
    graph.set_metadata(model, contract.METADATA_KEY, metadata.to_json().encode())
