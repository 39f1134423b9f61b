"""The two message layouts a federation's ClientApp answers, and what the server reads back.

Flower 1.42 carries a round in one of two layouts:
- the Message API (`flwr.serverapp.strategy`, with or without the differential-privacy
  wrappers): the head's kernels and biases by name in the `arrays` ArrayRecord, the round
  config in `config`; replies add `metrics` (a MetricRecord) and the device's fingerprint;
- the legacy layout Flower's SecAgg+ workflow still speaks (`flwr.server.workflow.
  SecAggPlusWorkflow` over `flwr.server.strategy`): `fitins.parameters` / `evaluateins.
  parameters` hold the same arrays *by position* (legacy Parameters have no names) in the
  order of `head.trainable_entries`, `fitins.config` the round config; replies are FitRes /
  EvaluateRes records whose `metrics` ConfigRecord carries the fingerprint.
Either way a device gets exactly the head's kernels and biases and nothing else, and checks
them (`head.check_head_weights`) before anything changes.
"""

from __future__ import annotations

import enum
from typing import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common import (Code, EvaluateRes, FitRes, Status, bytes_to_ndarray, ndarray_to_bytes,
                         ndarrays_to_parameters)
from flwr.compat.common import recorddict_compat as compat

from tflite_transfer.runtime import contract
from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated import head

ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"
FINGERPRINT = "model-fingerprint"
NUM_EXAMPLES = "num-examples"          # the weight Flower's strategies average by
# Set by the server when updates must weigh the same (differential privacy: the noise is
# calibrated to one device's clipped update out of the sampled ones): devices then report
# a weight of 1 and do not send their sample count.
UNIFORM_WEIGHTS = "uniform-weights"


class Layout(enum.Enum):
    MESSAGE_API = "message-api"
    LEGACY = "legacy"


def _legacy_keys(kind: str) -> tuple[str, str]:
    return f"{kind}ins.parameters", f"{kind}ins.config"


def received(content: RecordDict, metadata: contract.ModelMetadata, kind: str) -> tuple[dict, ConfigRecord, Layout]:
    """(weights by name, round config, layout) of a `train` or `evaluate` message."""
    arrays_key, config_key = _legacy_keys("fit" if kind == "train" else "evaluate")
    if arrays_key in content.array_records and config_key in content.config_records:
        record = content.array_records[arrays_key]
        entries = head.trainable_entries(metadata)
        if len(record) != len(entries):
            raise InvalidInputError(
                f"federated parameters: {len(record)} arrays, the model's head has {len(entries)} "
                f"({[e.name for e in entries]})")
        try:
            arrays = [bytes_to_ndarray(array.data) for array in record.values()]
        except ValueError as error:
            raise InvalidInputError(f"federated parameters: unreadable array ({error})") from None
        weights = {entry.name: value for entry, value in zip(entries, arrays)}
        return weights, content.config_records[config_key], Layout.LEGACY
    if ARRAYS not in content.array_records or CONFIG not in content.config_records:
        raise InvalidInputError(f"message lacks the '{ARRAYS}' ArrayRecord or the '{CONFIG}' ConfigRecord")
    weights = {name: array.numpy() for name, array in content.array_records[ARRAYS].items()}
    return weights, content.config_records[CONFIG], Layout.MESSAGE_API


def ordered(metadata: contract.ModelMetadata, weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The head's arrays in state order (the legacy layout's positions)."""
    return [np.asarray(weights[entry.name]) for entry in head.trainable_entries(metadata)]


def train_reply(layout: Layout, metadata: contract.ModelMetadata, weights: Mapping[str, np.ndarray],
                weight: int, metrics: Mapping[str, float], fingerprint: str) -> RecordDict:
    if layout is Layout.LEGACY:
        return compat.fitres_to_recorddict(FitRes(
            Status(Code.OK, ""), ndarrays_to_parameters(ordered(metadata, weights)), weight,
            {**metrics, FINGERPRINT: fingerprint}), keep_input=False)
    return RecordDict({
        ARRAYS: ArrayRecord({entry.name: Array(np.asarray(weights[entry.name]))
                             for entry in head.trainable_entries(metadata)}),
        METRICS: MetricRecord({NUM_EXAMPLES: weight, **metrics}),
        CONFIG: ConfigRecord({FINGERPRINT: fingerprint}),
    })


def evaluate_reply(layout: Layout, loss: float, weight: int, metrics: Mapping[str, float],
                   fingerprint: str) -> RecordDict:
    if layout is Layout.LEGACY:
        return compat.evaluateres_to_recorddict(EvaluateRes(
            Status(Code.OK, ""), loss, weight, {**metrics, FINGERPRINT: fingerprint}))
    return RecordDict({METRICS: MetricRecord({NUM_EXAMPLES: weight, **metrics}),
                       CONFIG: ConfigRecord({FINGERPRINT: fingerprint})})


_RESULT_CONFIGS = (CONFIG, "fitres.metrics", "evaluateres.metrics")


def carries_results(content: RecordDict) -> bool:
    """Whether a reply holds weights or metrics the server aggregates (SecAgg+'s key
    exchange replies hold neither)."""
    return any(key in content.config_records for key in _RESULT_CONFIGS) or ARRAYS in content.array_records


def reply_fingerprint(content: RecordDict) -> str | None:
    for key in _RESULT_CONFIGS:
        if key in content.config_records and FINGERPRINT in content.config_records[key]:
            return str(content.config_records[key][FINGERPRINT])
    return None


def conform_outgoing(content: RecordDict, metadata: contract.ModelMetadata) -> None:
    """Puts the head's arrays of an outgoing message in the model's dtypes, in place.

    Flower's FedOpt strategies compute in float64 and SecAgg+ dequantizes to float64; a
    device accepts exactly the dtypes its model holds."""
    entries = head.trainable_entries(metadata)
    if ARRAYS in content.array_records:
        record = content.array_records[ARRAYS]
        dtypes = {entry.name: entry.numpy_dtype for entry in entries}
        content.array_records[ARRAYS] = ArrayRecord({
            name: Array(np.asarray(array.numpy()).astype(dtypes.get(name, array.numpy().dtype), copy=False))
            for name, array in record.items()})
    for kind in ("fit", "evaluate"):
        arrays_key, _ = _legacy_keys(kind)
        if arrays_key in content.array_records and len(content.array_records[arrays_key]) == len(entries):
            record = content.array_records[arrays_key]
            content.array_records[arrays_key] = ArrayRecord({
                key: Array(data=ndarray_to_bytes(bytes_to_ndarray(array.data).astype(entry.numpy_dtype, copy=False)),
                           dtype="", stype=array.stype, shape=())
                for (key, array), entry in zip(record.items(), entries)}, keep_input=False)
