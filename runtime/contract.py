"""The model contract, defined once: signature and tensor names, state naming, the label
spec, and the typed, versioned metadata record every compiled model carries.

numpy-only. The compiler writes what this module describes; the Python runtime, the C++
runtime (through golden files generated from here), the web runtime and the benchmarks read
it. Nothing else spells a signature or tensor name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, Iterable, Mapping

import numpy as np

from tflite_transfer.runtime.contract_tensors import (  # noqa: F401 (re-exported: the contract is one module)
    BOTTLENECK_ADAPTERS, DEFAULT_INPUT_NAMES, IMAGE_KIND, INPUT_KINDS, NAME_PRESETS, NAME_ROLES,
    ONE_HOT_SUM_TOLERANCE, TENSOR_KIND, InputSpec, TensorNames, input_kind, names_problems,
    oldest_version_describing, range_is_valid, version_3_fields, version_3_problems)
from tflite_transfer.runtime.errors import UnsupportedModelError

METADATA_KEY = "tflite_transfer"      # name of the model's metadata entry
FORMAT = "tflite-transfer"
CONTRACT_VERSION = 3                   # 3: per-model tensor names, the input described, one-hot labels, adapters
SUPPORTED_CONTRACT_VERSIONS = (1, 2, 3)  # 2: label spec, state roles, fixed batches, model digest; 1: no digest

# Signatures, in subgraph order (`infer` is subgraph 0 so a plain invoke() runs it).
INFER, LOAD, TRAIN, TRAIN_IMAGES = "infer", "load", "train", "train_images"
SAVE, RESTORE, INITIALIZE, SET_LEARNING_RATE = "save", "restore", "initialize", "set_learning_rate"
SIGNATURES = (INFER, LOAD, TRAIN, TRAIN_IMAGES, SAVE, RESTORE, INITIALIZE, SET_LEARNING_RATE)
IMAGE_SIGNATURES = (INFER, LOAD, TRAIN_IMAGES)       # take `image`; their batch is `image_batch`
# Tensor names of versions 1 and 2 and the defaults of version 3 (a model's own: metadata.tensor_names).
IMAGE, BOTTLENECK, LABEL, LOSS = "image", "bottleneck", "label", "loss"
PROBABILITIES, PREDICTIONS = "probabilities", "predictions"
STEP, LEARNING_RATE = "step", "learning_rate"


@dataclasses.dataclass(frozen=True)
class SignatureSpec:
    """The exact input and output tensor names of one signature."""
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def signature_specs(names: TensorNames | str, state_names: tuple[str, ...]) -> dict[str, SignatureSpec]:
    """Every signature of a compiled model: exact names, checked by the compiler and runtimes.
    `names`: the model's tensor names (a str: the output name, with the fixed names of version 2)."""
    names = TensorNames.fixed(names) if isinstance(names, str) else names
    state = tuple(state_names)
    specs = (
        SignatureSpec(INFER, (names.input,), (names.output,)),
        SignatureSpec(LOAD, (names.input,), (names.bottleneck,)),
        SignatureSpec(TRAIN, (names.bottleneck, names.label), (names.loss,)),
        SignatureSpec(TRAIN_IMAGES, (names.input, names.label), (names.loss,)),
        SignatureSpec(SAVE, (), state),
        SignatureSpec(RESTORE, state, (STEP,)),
        SignatureSpec(INITIALIZE, (), (STEP,)),
        SignatureSpec(SET_LEARNING_RATE, (LEARNING_RATE,), (LEARNING_RATE,)),
    )
    return {spec.name: spec for spec in specs}


# What the state's scalars may hold (checked by the compiler's flags, `set_learning_rate`,
# restore and training, in every runtime). A float32 step lr * gradient overflows to inf near
# 3e38; 1e6 keeps the first step finite for any bottleneck a real base produces (|x| < 1e4) and
# is far beyond any rate that trains (0.0001..10). Adam's bias correction computes
# beta ** (step + 1) with an int32 step: at 2**31 - 1 the increment wraps negative and the next
# update is NaN, so training stops one short of that.
MAX_LEARNING_RATE = 1e6
MAX_STEP = 2**31 - 2


# State naming. Every variable `save` returns has a role; names are built here and never
# taken apart by suffix elsewhere (read the role from the metadata instead).
KERNEL, BIAS, SLOT = "kernel", "bias", "slot"
# A resource variable of the base itself (a streaming base's ring buffer): `save`/`restore`
# include it and `initialize` resets it to the base's own initial value; every
# `load`/`infer`/`train_images` call advances it like one call of the original 
# (runtime/SPEC.md#stateful-bases). Not trained, never shared (federated rounds send kernels and biases only).
BASE_STATE = "base_state"
ROLES = (KERNEL, BIAS, SLOT, STEP, LEARNING_RATE, BASE_STATE)


def weight_name(layer: str, kind: str) -> str:
    """'dense_0', 'kernel' -> 'dense_0_kernel' (kernels are [units, inputs])."""
    return f"{layer}_{kind}"


def slot_name(weight: str, slot: str) -> str:
    """'dense_0_kernel', 'm' -> 'dense_0_kernel_m'."""
    return f"{weight}_{slot}"


def base_state_name(variable: str) -> str:
    """The base's resource variable 'ring_buffer' -> 'base_state_ring_buffer'."""
    return f"{BASE_STATE}_{variable}"


@dataclasses.dataclass(frozen=True)
class StateEntry:
    """One variable of the training state: what `save` returns and `restore` takes."""
    name: str
    shape: tuple[int, ...]
    dtype: str                         # numpy name: 'float32', 'int32'
    role: str                          # one of ROLES
    layer: str | None = None           # kernel, bias, slot: the head layer it belongs to
    slot: str | None = None            # slot: the optimizer slot ('m', 'v', 'momentum')
    of: str | None = None              # slot: the weight it belongs to

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


def state_layout(layers: Iterable[tuple[str, int, int]], slots: Iterable[str]) -> tuple[StateEntry, ...]:
    """Every variable `save` returns, in the order the compiler, the metadata, checkpoints and
    golden files use, with its role: each layer's kernel [units, inputs] and bias [units], then
    every weight's optimizer slots (its shape), then step and learning_rate ([1] each); see
    runtime/SPEC.md#state-and-roles.
    `layers`: (name, units, inputs) per head layer, from the bottleneck to the logits."""
    slots = tuple(slots)
    weights = []
    for layer, units, inputs in layers:
        weights.append(StateEntry(weight_name(layer, KERNEL), (int(units), int(inputs)), "float32", KERNEL, layer=layer))
        weights.append(StateEntry(weight_name(layer, BIAS), (int(units),), "float32", BIAS, layer=layer))
    slot_entries = [StateEntry(slot_name(weight.name, slot), weight.shape, "float32", SLOT, layer=weight.layer,
                               slot=slot, of=weight.name) for weight in weights for slot in slots]
    return (*weights, *slot_entries, StateEntry(STEP, (1,), "int32", STEP),
            StateEntry(LEARNING_RATE, (1,), "float32", LEARNING_RATE))


LABEL_KINDS = ("class_ids", "targets", "one_hot")
LABEL_FORMATS = ("class_ids", "one_hot")   # what a classifier's `train` takes (--label_format)


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """What `train`/`train_images` take as `label`, per sample."""
    kind: str      # 'class_ids' (int32 []), 'targets' (float32 [k], any values: mse) or
                   # 'one_hot' (float32 [k], rows >= 0 summing to 1: one-hot or soft targets)
    dtype: str
    shape: tuple[int, ...]             # per sample, without the batch dimension

    @property
    def class_ids(self) -> bool:
        return self.kind == "class_ids"

    @property
    def one_hot(self) -> bool:
        return self.kind == "one_hot"

    @classmethod
    def for_loss(cls, labels_are_class_ids: bool, num_outputs: int,
                 label_format: str = "class_ids") -> "LabelSpec":
        if labels_are_class_ids:
            if label_format == "one_hot":
                return cls("one_hot", "float32", (num_outputs,))
            return cls("class_ids", "int32", ())
        return cls("targets", "float32", (num_outputs,))


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """The typed record stored as JSON in the model's `tflite_transfer` metadata entry."""
    bottleneck_size: int
    num_outputs: int
    loss: str
    output: str                        # `infer`'s output: 'probabilities' or 'predictions'
    label: LabelSpec
    state: tuple[StateEntry, ...]
    fingerprint: str                   # identifies the model for checkpoints (contract + initial weights)
    optimizer: Mapping[str, Any]
    labels: tuple[str, ...] = ()
    label_smoothing: float = 0.0
    head: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    base: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    image_range: tuple[float, float] | None = None   # versions 1, 2 (version 3: input.range)
    image_batch: int | None = None     # fixed batch of load/infer/train_images; None: any
    train_batch: int | None = None     # fixed batch of train; None: any
    model_digest: str | None = None    # sha256 of the file, see model_digest()
    bottleneck_max_norm2: float | None = None   # largest |bottleneck|^2 the compiler measured (runtime/SPEC.md#training)
    # Version 3 (None in versions 1 and 2: the fixed names, an image input).
    names: TensorNames | None = None   # the tensor name of each role; see tensor_names
    input: InputSpec | None = None     # the input: kind, dtype, per-sample shape, value range
    bottleneck_adapter: Mapping[str, Any] | None = None  # {kind, cut_shape} at a spatial cut
    contract_version: int = CONTRACT_VERSION
    format: str = FORMAT

    # Derived views.
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.state)

    def state_entry(self, name: str) -> StateEntry:
        for entry in self.state:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def entries_with_role(self, role: str) -> tuple[StateEntry, ...]:
        return tuple(entry for entry in self.state if entry.role == role)

    @property
    def tensor_names(self) -> TensorNames:
        """The model's tensor names: its own (version 3) or the fixed ones (versions 1, 2)."""
        return self.names if self.names is not None else TensorNames.fixed(self.output)

    @property
    def input_range(self) -> tuple[float, float] | None:
        """The value range the app feeds, when known."""
        return self.input.range if self.input is not None else self.image_range

    @property
    def signatures(self) -> dict[str, SignatureSpec]:
        return signature_specs(self.tensor_names, self.state_names)

    def fixed_batch(self, signature: str) -> int | None:
        """The batch size a signature's shapes fix, or None when any batch works."""
        if signature in IMAGE_SIGNATURES:
            return self.image_batch
        if signature == TRAIN:
            return self.train_batch
        return None

    # JSON.
    def to_json(self) -> str:
        record = dataclasses.asdict(self)
        record["state"] = [{k: v for k, v in dataclasses.asdict(e).items() if v is not None}
                           for e in self.state]
        record["label"] = dataclasses.asdict(self.label)
        if record["bottleneck_max_norm2"] is None:   # optional: records without it stay byte-identical
            del record["bottleneck_max_norm2"]
        for key in _FIELDS_NOT_IN[min(self.contract_version, CONTRACT_VERSION)]:
            record.pop(key)
        # Compact separators: the digest marker is found by a byte search (model_digest()).
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "<model>") -> "ModelMetadata":
        try:
            record = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise UnsupportedModelError(f"{source}: '{METADATA_KEY}' metadata is not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise UnsupportedModelError(f"{source}: '{METADATA_KEY}' metadata is not a JSON object")
        return _metadata_from_record(record, source)


# Fields a version's record does not have (version 3 replaced image_range by input.range).
_V3_FIELDS = ("names", "input", "bottleneck_adapter")
_FIELDS_NOT_IN = {1: _V3_FIELDS, 2: _V3_FIELDS, 3: ("image_range",)}


def _metadata_from_record(record: dict, source: str) -> ModelMetadata:
    version = record.get("contract_version")
    if record.get("format") != FORMAT or version not in SUPPORTED_CONTRACT_VERSIONS:
        raise UnsupportedModelError(
            f"{source}: metadata format {record.get('format')!r} contract version {version!r}; this "
            f"runtime reads {FORMAT!r} versions {', '.join(map(str, SUPPORTED_CONTRACT_VERSIONS))}: "
            "recompile the model or update tflite-transfer")
    try:
        if version == 1:
            record = _upgrade_version_1(record)
        label = LabelSpec(str(record["label"]["kind"]), str(record["label"]["dtype"]),
                          tuple(int(d) for d in record["label"]["shape"]))
        state = tuple(StateEntry(name=str(e["name"]), shape=tuple(int(d) for d in e["shape"]),
                                 dtype=str(np.dtype(e["dtype"])), role=str(e["role"]),
                                 layer=e.get("layer"), slot=e.get("slot"), of=e.get("of"))
                      for e in record["state"])
        image_range = record.get("image_range")
        metadata = ModelMetadata(
            bottleneck_size=int(record["bottleneck_size"]), num_outputs=int(record["num_outputs"]),
            loss=str(record["loss"]), output=str(record["output"]), label=label, state=state,
            fingerprint=str(record["fingerprint"]), optimizer=dict(record["optimizer"]),
            labels=tuple(str(n) for n in record.get("labels") or ()),
            label_smoothing=float(record.get("label_smoothing") or 0.0),
            head=dict(record.get("head") or {}), base=dict(record.get("base") or {}),
            image_range=tuple(float(v) for v in image_range) if image_range else None,
            image_batch=_optional_int(record.get("image_batch")),
            train_batch=_optional_int(record.get("train_batch")),
            model_digest=record.get("model_digest"), contract_version=int(version),
            bottleneck_max_norm2=_optional_float(record.get("bottleneck_max_norm2")),
            **(version_3_fields(record) if version >= 3 else {}))
    except (KeyError, TypeError, ValueError, OverflowError) as error:  # Overflow: int(Infinity)
        raise UnsupportedModelError(
            f"{source}: '{METADATA_KEY}' metadata is incomplete or malformed "
            f"({type(error).__name__}: {error}); recompile the model") from None
    _check_metadata(metadata, source)
    return metadata


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def _check_metadata(metadata: ModelMetadata, source: str) -> None:
    problems = []
    if metadata.bottleneck_size < 1 or metadata.num_outputs < 1:
        problems.append(f"bottleneck_size {metadata.bottleneck_size}, num_outputs {metadata.num_outputs}")
    if metadata.label.kind not in LABEL_KINDS:
        problems.append(f"label kind {metadata.label.kind!r}")
    if len(set(metadata.state_names)) != len(metadata.state):
        problems.append("duplicate state names")
    for entry in metadata.state:
        if entry.role not in ROLES or any(d < 0 for d in entry.shape):
            problems.append(f"state '{entry.name}' role {entry.role!r} shape {list(entry.shape)}")
    for batch in (metadata.image_batch, metadata.train_batch):
        if batch is not None and batch < 1:
            problems.append(f"fixed batch {batch}")
    if metadata.labels and len(metadata.labels) != metadata.num_outputs:
        problems.append(f"{len(metadata.labels)} labels for {metadata.num_outputs} outputs")
    if metadata.contract_version >= 2 and not _is_digest(metadata.model_digest):
        problems.append("no model_digest")
    if metadata.contract_version >= 3:
        problems += version_3_problems(metadata)
    elif metadata.label.one_hot:
        problems.append("one_hot labels before contract version 3")
    if problems:
        raise UnsupportedModelError(f"{source}: inconsistent '{METADATA_KEY}' metadata: {'; '.join(problems)}")


def _upgrade_version_1(record: dict) -> dict:
    """Version 1 stored state as {name: {shape, dtype}} and implied roles and labels."""
    names = list(record["state"])
    weights = [n for n in names if n.endswith(("_kernel", "_bias"))
               and not any(n != w and n.startswith(w + "_") for w in names)]
    entries = []
    for name, spec in record["state"].items():
        entry = {"name": name, "shape": spec["shape"], "dtype": spec["dtype"]}
        owner = next((w for w in weights if name.startswith(w + "_")), None)
        if name in (STEP, LEARNING_RATE):
            entry["role"] = name
        elif owner:
            entry.update(role=SLOT, of=owner, slot=name[len(owner) + 1:],
                         layer=owner.rsplit("_", 1)[0])
        else:
            kind = name.rsplit("_", 1)[1]
            entry.update(role=kind, layer=name.rsplit("_", 1)[0])
        entries.append(entry)
    classes = record["loss"] != "mse"
    label = dataclasses.asdict(LabelSpec.for_loss(classes, int(record["num_outputs"])))
    return {**record, "state": entries, "label": label}


# The model digest: sha256 over the whole file (FlatBuffer and any appended zip) with the 64
# hex digits of the digest itself replaced by '0'. It is found by a byte search, so a reader
# checks it before any parser or interpreter sees the bytes (a flipped bit in a weight or an
# offset is caught, not run: LiteRT aborts the process on some corrupt files).
DIGEST_PLACEHOLDER = "0" * 64
_DIGEST_PATTERN = re.compile(rb'"model_digest":"([0-9a-f]{64})"')


def _is_digest(value) -> bool:
    return isinstance(value, str) and re.fullmatch("[0-9a-f]{64}", value) is not None


def find_digest(model_bytes: bytes) -> tuple[int, str] | None:
    """(offset of the hex digits, the digest) or None when the file has no digest field."""
    matches = list(_DIGEST_PATTERN.finditer(model_bytes))
    if len(matches) != 1:
        return None
    return matches[0].start(1), matches[0].group(1).decode()


def sha256_with_hex_zeroed(chunks: Iterable[bytes | memoryview], hex_offset: int) -> str:
    """sha256 of the concatenated chunks with the 64 bytes at `hex_offset` read as ASCII '0'.

    The self-digest scheme shared by models (`model_digest`) and checkpoints (their
    `checksum`, runtime/checkpoint.py): a file stores the digest of itself with the digest's
    own hex digits zeroed. Chunks are hashed as they come, so a reader streams a file of any
    size through it in bounded memory.
    """
    digest = hashlib.sha256()
    zero_begin, zero_end = hex_offset, hex_offset + len(DIGEST_PLACEHOLDER)
    position = 0
    for chunk in chunks:
        chunk = memoryview(chunk).cast("B")
        end = position + len(chunk)
        if end <= zero_begin or position >= zero_end:
            digest.update(chunk)
        else:  # the chunk overlaps the hex digits: hash before, zeros, after
            inside_begin, inside_end = max(zero_begin, position), min(zero_end, end)
            digest.update(chunk[:inside_begin - position])
            digest.update(b"0" * (inside_end - inside_begin))
            digest.update(chunk[inside_end - position:])
        position = end
    return digest.hexdigest()


def model_digest(model_bytes: bytes) -> str:
    """The digest of a file whose digest field holds anything (it is zeroed for hashing)."""
    found = find_digest(model_bytes)
    if found is None:
        raise UnsupportedModelError("model has no (or more than one) model_digest field")
    offset, _ = found
    return sha256_with_hex_zeroed([model_bytes], offset)


def stamp_digest(model_bytes: bytes) -> bytes:
    """Writes the digest into a file whose metadata holds DIGEST_PLACEHOLDER (the compiler's last step)."""
    offset, _ = find_digest(model_bytes)
    digest = model_digest(model_bytes).encode()
    return model_bytes[:offset] + digest + model_bytes[offset + 64:]


def digest_matches(model_bytes: bytes) -> bool | None:
    """True/False when the file has a digest field, None when it has none (contract version 1)."""
    found = find_digest(model_bytes)
    if found is None:
        return None
    return found[1] == model_digest(model_bytes)
