"""Generates the golden files of the model contract from `tflite_transfer.runtime.contract`
and `runtime/checkpoint.py`: what every other implementation (the C++ runtime, the web
runtime) tests its own reader against, instead of a copy of the rules.

    python -m tests.golden.generate            # rewrite the files
    python -m tests.golden.generate --check    # exit 1 if a file differs from what the code makes now

Files (all deterministic; numpy only, no TensorFlow):
  metadata.json              a compiled model's `tflite_transfer` metadata (contract v2): 3-class
                             softmax head on 7 features, Adam, class labels, any batch
  metadata_fixed_batch.json  contract v2 with an MSE head (float targets) and --batch=1,4
  metadata_v1.json           the same model as metadata.json as compilers before 2026-12 wrote it
  contract.json              per metadata file, what a reader must derive from it: every
                             signature's exact input/output names, state entries with roles,
                             the label spec, each signature's fixed batch
  checkpoint.ckpt            the state of metadata.json's model as runtime/checkpoint.py writes it
  vectors.json               the rules as data: every limit by name and accept/refuse vectors for
                             learning rates, steps, inputs, model files and checkpoint files
                             (tests/golden/vectors.py, vector_files.py; schema in README.md)
  vectors/checkpoints/*.ckpt checkpoints for vectors/model.tflite to accept or refuse
  vectors/models/*.tflite    damaged copies of vectors/model.tflite to refuse
The real model vectors/model.tflite is an input, not generated here: tests/golden/make_model.py
compiles it (with TensorFlow) and it is committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.golden import vector_files, vectors
from tflite_transfer.runtime import checkpoint, contract

GOLDEN_DIR = Path(__file__).resolve().parent
_SEED = 20261201


def _state(layers: tuple[tuple[str, int, int], ...], slots: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Deterministic values for every state variable, named by the contract."""
    rng = np.random.default_rng(_SEED)
    state = {}
    weights = []
    for layer, units, inputs in layers:
        state[contract.weight_name(layer, contract.KERNEL)] = rng.normal(size=(units, inputs)).astype(np.float32)
        state[contract.weight_name(layer, contract.BIAS)] = rng.normal(size=(units,)).astype(np.float32)
        weights += [(layer, contract.weight_name(layer, contract.KERNEL)), (layer, contract.weight_name(layer, contract.BIAS))]
    for _, weight in weights:
        for slot in slots:
            state[contract.slot_name(weight, slot)] = np.abs(rng.normal(size=state[weight].shape)).astype(np.float32)
    state[contract.STEP] = np.array([42], np.int32)
    state[contract.LEARNING_RATE] = np.array([0.01], np.float32)
    return state


def _entries(layers, slots, state) -> tuple[contract.StateEntry, ...]:
    """In the compiler's order: every layer's kernel and bias, then their slots, step, learning_rate."""
    weights = [(layer, kind, contract.weight_name(layer, kind))
               for layer, _, _ in layers for kind in (contract.KERNEL, contract.BIAS)]
    entries = [contract.StateEntry(weight, state[weight].shape, "float32", kind, layer=layer)
               for layer, kind, weight in weights]
    entries += [contract.StateEntry(contract.slot_name(weight, slot), state[weight].shape, "float32",
                                    contract.SLOT, layer=layer, slot=slot, of=weight)
                for layer, _, weight in weights for slot in slots]
    entries += [contract.StateEntry(contract.STEP, (1,), "int32", contract.STEP),
                contract.StateEntry(contract.LEARNING_RATE, (1,), "float32", contract.LEARNING_RATE)]
    return tuple(entries)


LAYERS = (("dense_0", 3, 7),)
SLOTS = ("m", "v")
STATE = _state(LAYERS, SLOTS)
FINGERPRINT = hashlib.sha256(b"tflite-transfer golden model").hexdigest()
OPTIMIZER = {"name": "adam", "learning_rate": 0.01, "momentum": 0.0, "nesterov": False, "beta_1": 0.9,
             "beta_2": 0.999, "epsilon": 1e-07, "weight_decay": 0.0}

METADATA = contract.ModelMetadata(
    bottleneck_size=7, num_outputs=3, loss="softmax_cross_entropy", output=contract.PROBABILITIES,
    label=contract.LabelSpec.for_loss(True, 3), state=_entries(LAYERS, SLOTS, STATE),
    fingerprint=FINGERPRINT, optimizer=OPTIMIZER, labels=("cat", "dog", "fox"),
    head={"kind": "softmax", "description": "dense 7->3"},
    base={"description": "tiny_classifier_quant.tflite (0.01 MB)", "synthetic_weights": False},
    image_range=(0.0, 255.0), model_digest=hashlib.sha256(b"golden model bytes").hexdigest())

MSE_LAYERS = (("hidden", 5, 7), ("scores", 2, 5))
METADATA_FIXED_BATCH = dataclasses.replace(
    METADATA, num_outputs=2, loss="mse", output=contract.PREDICTIONS, label=contract.LabelSpec.for_loss(False, 2),
    state=_entries(MSE_LAYERS, (), _state(MSE_LAYERS, ())), labels=(),
    optimizer={**OPTIMIZER, "name": "sgd"}, head={"kind": "mlp", "description": "MLP 7->5->2 (ReLU hidden layers)"},
    image_batch=1, train_batch=4)


def _version_1(metadata: contract.ModelMetadata) -> str:
    """The record as contract version 1 stored it: state as {name: {shape, dtype}}, no roles,
    no label spec, no batches or digest, a `signatures` list."""
    record = json.loads(metadata.to_json())
    for key in ("label", "image_batch", "train_batch", "model_digest"):
        record.pop(key)
    record.update(contract_version=1, signatures=list(contract.SIGNATURES),
                  state={e.name: {"shape": list(e.shape), "dtype": e.dtype} for e in metadata.state})
    return json.dumps(record, sort_keys=True)


def _derived(metadata: contract.ModelMetadata) -> dict:
    return {
        "signatures": {name: {"inputs": list(spec.inputs), "outputs": list(spec.outputs)}
                       for name, spec in metadata.signatures.items()},
        "signature_order": list(contract.SIGNATURES),
        "state": [{k: v for k, v in dataclasses.asdict(e).items() if v is not None} for e in metadata.state],
        "label": dataclasses.asdict(metadata.label),
        "fixed_batch": {name: metadata.fixed_batch(name) for name in contract.SIGNATURES},
        "contract_version": metadata.contract_version,
    }


def _checkpoint_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "golden.ckpt"
        checkpoint.write_checkpoint(path, STATE, FINGERPRINT, {"num_samples_cached": "24"})
        return path.read_bytes()


def _vectors() -> dict[str, bytes]:
    """vectors.json and the files it names (paths relative to tests/golden/)."""
    model_bytes = (GOLDEN_DIR / vector_files.MODEL).read_bytes()
    model, model_vectors, model_files = vector_files.model_vectors(model_bytes)
    checkpoint_vectors, checkpoint_files = vector_files.checkpoint_vectors(model_bytes)
    document = {
        "schema_version": vectors.SCHEMA_VERSION,
        "limits": vectors.limits(),
        "learning_rates": vectors.learning_rates(),
        "steps": vectors.steps(),
        "training_steps": vectors.training_steps(),
        "inputs": {"contexts": vectors.CONTEXTS, "vectors": vectors.input_vectors()},
        "model": model,
        "model_files": model_vectors,
        "digest_strings": vector_files.digest_strings(),
        "checkpoints": checkpoint_vectors,
    }
    text = json.dumps(document, indent=1, sort_keys=True, allow_nan=False).encode() + b"\n"
    return {"vectors.json": text, **model_files, **checkpoint_files}


def golden_files() -> dict[str, bytes]:
    """File name (relative to tests/golden/) -> the bytes the code makes now."""
    version_1 = _version_1(METADATA)
    derived = {"metadata.json": _derived(METADATA),
               "metadata_fixed_batch.json": _derived(METADATA_FIXED_BATCH),
               "metadata_v1.json": _derived(contract.ModelMetadata.from_json(version_1))}
    return {
        "metadata.json": METADATA.to_json().encode() + b"\n",
        "metadata_fixed_batch.json": METADATA_FIXED_BATCH.to_json().encode() + b"\n",
        "metadata_v1.json": version_1.encode() + b"\n",
        "contract.json": json.dumps(derived, indent=1, sort_keys=True).encode() + b"\n",
        "checkpoint.ckpt": _checkpoint_bytes(),
        **_vectors(),
    }


def stale_vector_files(generated: dict[str, bytes]) -> list[str]:
    """Files under vectors/checkpoints and vectors/models that the generator no longer makes."""
    return sorted(str(path.relative_to(GOLDEN_DIR)) for folder in ("checkpoints", "models")
                  for path in (GOLDEN_DIR / "vectors" / folder).glob("*")
                  if str(path.relative_to(GOLDEN_DIR)) not in generated)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    generated = golden_files()
    for name, data in generated.items():
        path = GOLDEN_DIR / name
        if check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    for name in stale_vector_files(generated):
        if check:
            stale.append(name)
        else:
            (GOLDEN_DIR / name).unlink()
    if stale:
        print(f"golden files out of date: {', '.join(stale)}; run python -m tests.golden.generate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
