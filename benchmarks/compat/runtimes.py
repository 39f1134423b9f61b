"""The stock runtimes of the compatibility matrix, each installed in a venv of its own."""

from __future__ import annotations

import dataclasses

from benchmarks.common.venvs import VenvSpec


@dataclasses.dataclass(frozen=True)
class Runtime:
    name: str                       # venv folder and table key, e.g. "tf-2.12.1"
    api: str                        # probe.py --api: litert | tflite_runtime | tf
    package: str
    version: str
    requirements: tuple[str, ...]   # one `pip install` of these

    @property
    def venv(self) -> VenvSpec:
        # The bundled pip is kept: some old wheels (numpy<2 with 1.0.x) resolve with it as is.
        return VenvSpec(f"compat/{self.name}", (self.requirements,), upgrade_pip=False)

    @property
    def label(self) -> str:
        return {"litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
                "tf": "tensorflow-cpu (tf.lite)"}[self.api]


# The newest patch of each minor release (--all_patches: every release).
LITERT_VERSIONS = ("1.0.1", "1.1.2", "1.2.0", "1.3.0", "1.4.0", "2.0.3", "2.1.6", "2.2.0", "2.3.0")
LITERT_ALL = ("1.0.0", "1.0.1", "1.1.0", "1.1.1", "1.1.2", "1.2.0", "1.3.0", "1.4.0", "2.0.2",
              "2.0.3", "2.1.0", "2.1.1", "2.1.2", "2.1.3", "2.1.4", "2.1.5", "2.1.6", "2.2.0", "2.3.0")
TF_VERSIONS = ("2.12.1", "2.13.1", "2.14.1", "2.15.1", "2.16.2", "2.17.1", "2.18.1", "2.19.1",
               "2.20.0", "2.21.0")


def runtimes(all_patches: bool = False) -> list[Runtime]:
    found = []
    for version in LITERT_ALL if all_patches else LITERT_VERSIONS:
        # 1.0.x wheels are built against numpy 1 but do not say so.
        numpy = ("numpy<2",) if version.startswith("1.0") else ()
        found.append(Runtime(f"litert-{version}", "litert", "ai-edge-litert", version,
                             (f"ai-edge-litert=={version}", *numpy)))
    found.append(Runtime("tflite_runtime-2.14.0", "tflite_runtime", "tflite-runtime", "2.14.0",
                         ("tflite-runtime==2.14.0", "numpy<2")))
    for version in TF_VERSIONS:
        found.append(Runtime(f"tf-{version}", "tf", "tensorflow-cpu", version,
                             (f"tensorflow-cpu=={version}",)))
    return found
