"""Writes the golden files that the Python and C++ tests both read (issue 13): a compiled
model's metadata record (contract version 2, and the same model as contract version 1 wrote
it) and a checkpoint of that model's state, all from the contract module and
runtime/checkpoint.py. The files are committed; run this again only when the contract or the
checkpoint format changes on purpose:

    python tests/golden/generate.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tflite_transfer.runtime import checkpoint, contract

GOLDEN = Path(__file__).resolve().parent
METADATA_V2 = GOLDEN / "metadata_v2.json"
METADATA_V1 = GOLDEN / "metadata_v1.json"
CHECKPOINT_V2 = GOLDEN / "checkpoint_v2.safetensors"
EXTRA_METADATA = {"num_samples_cached": "5"}


def golden_metadata() -> contract.ModelMetadata:
    """An MLP head (16 hidden units, 3 classes) trained by Adam: every role, slots, labels,
    fixed batches."""
    entries = []
    for layer, (units, inputs) in (("dense_0", (16, 7)), ("dense_1", (3, 16))):
        for kind, shape in ((contract.KERNEL, (units, inputs)), (contract.BIAS, (units,))):
            weight = contract.weight_name(layer, kind)
            entries.append(contract.StateEntry(weight, shape, "float32", kind, layer=layer))
            for slot in ("m", "v"):
                entries.append(contract.StateEntry(contract.slot_name(weight, slot), shape, "float32",
                                                   contract.SLOT, layer=layer, slot=slot, of=weight))
    entries.append(contract.StateEntry(contract.LEARNING_RATE, (1,), "float32", contract.LEARNING_RATE))
    entries.append(contract.StateEntry(contract.STEP, (1,), "int32", contract.STEP))
    return contract.ModelMetadata(
        bottleneck_size=7, num_outputs=3, loss="softmax_cross_entropy", output=contract.PROBABILITIES,
        label=contract.LabelSpec.for_loss(True, 3), state=tuple(entries),
        fingerprint="5eed" * 16, optimizer={"name": "adam", "learning_rate": 0.001},
        labels=("cat", "dog", "h\u00e9ron"), head={"kind": "mlp", "description": "mlp:16"},
        base={"description": "golden"}, image_range=(0.0, 255.0), image_batch=1, train_batch=16,
        model_digest="d1" * 32)


def version_1_record(metadata: contract.ModelMetadata) -> dict:
    """The same model as the compiler wrote it before contract version 2 (state by name, no
    roles, no label spec, no digest)."""
    record = json.loads(metadata.to_json())
    record["state"] = {entry.name: {"shape": list(entry.shape), "dtype": entry.dtype} for entry in metadata.state}
    for key in ("label", "model_digest", "image_batch", "train_batch"):
        del record[key]
    record["contract_version"] = 1
    return record


def golden_state(metadata: contract.ModelMetadata) -> dict[str, np.ndarray]:
    """Deterministic values with awkward bits: -0.0, a denormal, large and tiny magnitudes."""
    state = {}
    for index, entry in enumerate(metadata.state):
        count = int(np.prod(entry.shape))
        if entry.dtype == "int32":
            values = np.array([123], np.int32)
        else:
            values = (np.sin(np.arange(count, dtype=np.float64) * (index + 1)) * 10.0 ** (index % 5 - 2)).astype(np.float32)
            values[0] = -0.0 if index % 2 else np.float32(1e-45)
        state[entry.name] = values.reshape(entry.shape)
    return state


def main() -> None:
    metadata = golden_metadata()
    METADATA_V2.write_text(metadata.to_json() + "\n", encoding="utf-8")
    METADATA_V1.write_text(json.dumps(version_1_record(metadata), sort_keys=True, separators=(",", ":")) + "\n",
                           encoding="utf-8")
    checkpoint.write_checkpoint(CHECKPOINT_V2, golden_state(metadata), metadata.fingerprint, EXTRA_METADATA)
    print(f"wrote {METADATA_V2.name}, {METADATA_V1.name}, {CHECKPOINT_V2.name} in {GOLDEN}")


if __name__ == "__main__":
    main()
