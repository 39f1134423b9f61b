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
  contract.json              per metadata file above, what a reader must derive from it: every
                             signature's exact input/output names, state entries with roles,
                             the label spec, each signature's fixed batch
  metadata_v3.json           contract v3: metadata.json's model compiled for TensorFlow's example
                             app (--names=tf_example_app --input_range=0,1 --label_format=one_hot
                             --bottleneck_adapter=flatten at a [1, 7, 1] map)
  metadata_v3_tensor.json    contract v3: a non-image input (float32 [3, 40]) with default names,
                             an MSE head, --batch=1,4
  metadata_v3_stateful.json  contract v3: a streaming base (non-image input float32 [6]) whose
                             resource variables are state entries with role base_state (float32
                             and int32), SGD with momentum, --batch=1,4, bottleneck_max_norm2
  contract_v3.json           per v3 file, the same facts as contract.json plus the names, the
                             input, the adapter; and the rules as data: the one-hot tolerance
                             and label rows a reader must accept or refuse (in a file of its
                             own, so readers of versions 1 and 2 keep passing until ported)
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
    """Deterministic values for every state variable, in the contract's layout."""
    rng = np.random.default_rng(_SEED)
    state = {}
    for entry in contract.state_layout(layers, slots):
        if entry.role in (contract.KERNEL, contract.BIAS):
            state[entry.name] = rng.normal(size=entry.shape).astype(np.float32)
        elif entry.role == contract.SLOT:
            state[entry.name] = np.abs(rng.normal(size=entry.shape)).astype(np.float32)
    state[contract.STEP] = np.array([42], np.int32)
    state[contract.LEARNING_RATE] = np.array([0.01], np.float32)
    return state


LAYERS = (("dense_0", 3, 7),)
SLOTS = ("m", "v")
STATE = _state(LAYERS, SLOTS)
FINGERPRINT = hashlib.sha256(b"tflite-transfer golden model").hexdigest()
OPTIMIZER = {"name": "adam", "learning_rate": 0.01, "momentum": 0.0, "nesterov": False, "beta_1": 0.9,
             "beta_2": 0.999, "epsilon": 1e-07, "weight_decay": 0.0}

METADATA = contract.ModelMetadata(
    bottleneck_size=7, num_outputs=3, loss="softmax_cross_entropy", output=contract.PROBABILITIES,
    label=contract.LabelSpec.for_loss(True, 3), state=contract.state_layout(LAYERS, SLOTS),
    fingerprint=FINGERPRINT, optimizer=OPTIMIZER, labels=("cat", "dog", "fox"),
    head={"kind": "softmax", "description": "dense 7->3"},
    base={"description": "tiny_classifier_quant.tflite (0.01 MB)", "synthetic_weights": False},
    image_range=(0.0, 255.0), model_digest=hashlib.sha256(b"golden model bytes").hexdigest(),
    contract_version=2)

MSE_LAYERS = (("hidden", 5, 7), ("scores", 2, 5))
METADATA_FIXED_BATCH = dataclasses.replace(
    METADATA, num_outputs=2, loss="mse", output=contract.PREDICTIONS, label=contract.LabelSpec.for_loss(False, 2),
    state=contract.state_layout(MSE_LAYERS, ()), labels=(),
    optimizer={**OPTIMIZER, "name": "sgd"}, head={"kind": "mlp", "description": "MLP 7->5->2 (ReLU hidden layers)"},
    image_batch=1, train_batch=4)


METADATA_V3 = dataclasses.replace(
    METADATA, contract_version=3, image_range=None, output="output",
    names=contract.TensorNames(**contract.NAME_PRESETS["tf_example_app"]),
    input=contract.InputSpec(contract.IMAGE_KIND, "float32", (16, 12, 3), (0.0, 1.0), (0.0, 255.0)),
    label=contract.LabelSpec.for_loss(True, 3, "one_hot"),
    bottleneck_adapter={"cut_shape": [1, 7, 1], "kind": "flatten"})
METADATA_V3_TENSOR = dataclasses.replace(
    METADATA_FIXED_BATCH, contract_version=3, image_range=None, names=contract.TensorNames(
        input=contract.DEFAULT_INPUT_NAMES[contract.TENSOR_KIND], output=contract.PREDICTIONS),
    input=contract.InputSpec(contract.TENSOR_KIND, "float32", (3, 40)))
# A stateful base (BUILD.md, "Stateful bases"): its variables follow the head's state, with the
# base's own types; the compiler's measured feature scale is recorded (optional field).
METADATA_V3_STATEFUL = dataclasses.replace(
    METADATA, contract_version=3, image_range=None, labels=(), image_batch=1, train_batch=4,
    optimizer={"name": "momentum", "learning_rate": 0.01, "momentum": 0.9},
    base={"description": "streaming_base.tflite (0.01 MB)", "synthetic_weights": False},
    state=(*contract.state_layout(LAYERS, ("momentum",)),
           contract.StateEntry(contract.base_state_name("ring_buffer"), (1, 4, 6), "float32", contract.BASE_STATE),
           contract.StateEntry(contract.base_state_name("frame_count"), (1,), "int32", contract.BASE_STATE)),
    names=contract.TensorNames(input=contract.DEFAULT_INPUT_NAMES[contract.TENSOR_KIND]),
    input=contract.InputSpec(contract.TENSOR_KIND, "float32", (6,)), bottleneck_max_norm2=109.5)

# Label rows [batch 2, 3 classes] for one-hot models: what every reader accepts or refuses.
ONE_HOT_ROWS = {
    "accepted": [[[0, 1, 0], [1, 0, 0]], [[0.1, 0.8, 0.1], [0.3333334, 0.3333333, 0.3333333]],
                 [[0, 0.9995, 0], [1, 0, 0]]],
    # 1e39 is a JSON number that becomes Inf as float32 (JSON has no NaN or Inf).
    "refused": {"not_finite": [[0, 1e39, 1], [1, 0, 0]], "negative": [[1.5, -0.5, 0], [1, 0, 0]],
                "not_normalized": [[1, 1, 0], [1, 0, 0]], "sums_short": [[0.5, 0.49, 0], [1, 0, 0]]},
}


def _version_1(metadata: contract.ModelMetadata) -> str:
    """The record as contract version 1 stored it: state as {name: {shape, dtype}}, no roles,
    no label spec, no batches or digest, a `signatures` list."""
    record = json.loads(metadata.to_json())
    for key in ("label", "image_batch", "train_batch", "model_digest"):
        record.pop(key)
    record.update(contract_version=1, signatures=list(contract.SIGNATURES),
                  state={e.name: {"shape": list(e.shape), "dtype": e.dtype} for e in metadata.state})
    return json.dumps(record, sort_keys=True)


def _derived_v3(metadata: contract.ModelMetadata) -> dict:
    return {**_derived(metadata), "names": metadata.tensor_names.as_dict(),
            "input": dataclasses.asdict(metadata.input), "bottleneck_adapter": metadata.bottleneck_adapter}


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
    rules = {"one_hot_sum_tolerance": contract.ONE_HOT_SUM_TOLERANCE, "one_hot_rows": ONE_HOT_ROWS,
             "name_presets": contract.NAME_PRESETS}
    derived_v3 = {"metadata_v3.json": _derived_v3(METADATA_V3),
                  "metadata_v3_tensor.json": _derived_v3(METADATA_V3_TENSOR),
                  "metadata_v3_stateful.json": _derived_v3(METADATA_V3_STATEFUL)}
    return {
        "metadata_v3.json": METADATA_V3.to_json().encode() + b"\n",
        "metadata_v3_tensor.json": METADATA_V3_TENSOR.to_json().encode() + b"\n",
        "metadata_v3_stateful.json": METADATA_V3_STATEFUL.to_json().encode() + b"\n",
        "contract_v3.json": json.dumps({"files": derived_v3, "rules": rules}, indent=1,
                                       sort_keys=True).encode() + b"\n",
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
