"""A device's cached training samples for federated rounds: bottlenecks and labels.

numpy only. A device computes each photo's bottleneck once (`TransferModel.add_sample` runs
`load`) and keeps them; this file format lets a SuperNode process find them: one `.npz`
holding `bottleneck`/`label` (trained on) and `heldout_bottleneck`/`heldout_label` (scored
by `evaluate`, never trained on). No pickles are read.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from tflite_transfer.runtime.errors import InvalidInputError

_FIELDS = ("bottleneck", "label", "heldout_bottleneck", "heldout_label")


@dataclasses.dataclass(frozen=True)
class ClientData:
    bottleneck: np.ndarray           # float32 [n, features]: trained on
    label: np.ndarray                # int32 [n] class ids
    heldout_bottleneck: np.ndarray   # float32 [m, features]: only scored
    heldout_label: np.ndarray        # int32 [m]

    def __post_init__(self):
        for prefix in ("", "heldout_"):
            bottleneck = getattr(self, prefix + "bottleneck")
            label = getattr(self, prefix + "label")
            if bottleneck.ndim != 2 or label.ndim != 1 or len(bottleneck) != len(label):
                raise InvalidInputError(
                    f"client data: {prefix}bottleneck {list(bottleneck.shape)} and {prefix}label "
                    f"{list(label.shape)} must be [n, features] and [n]")
            if bottleneck.dtype != np.float32 or label.dtype.kind not in "iu":
                raise InvalidInputError(
                    f"client data: {prefix}bottleneck must be float32 and {prefix}label integer "
                    f"class ids, got {bottleneck.dtype} and {label.dtype}")
        if self.bottleneck.shape[1] != self.heldout_bottleneck.shape[1]:
            raise InvalidInputError(
                f"client data: bottleneck width {self.bottleneck.shape[1]} differs from the "
                f"held-out width {self.heldout_bottleneck.shape[1]}")

    def save(self, path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, **{field: getattr(self, field) for field in _FIELDS})

    @classmethod
    def load(cls, path) -> "ClientData":
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InvalidInputError(f"client data file '{path}' not found; write it with ClientData.save")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                missing = [field for field in _FIELDS if field not in arrays.files]
                if missing:
                    raise InvalidInputError(f"client data file '{path}' lacks {', '.join(missing)}")
                values = {field: np.array(arrays[field]) for field in _FIELDS}
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise InvalidInputError(f"client data file '{path}' is not a readable .npz ({error})") from None
        return cls(**values)
