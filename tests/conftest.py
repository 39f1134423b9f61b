"""Session-wide fixtures: real bases converted by TensorFlow, fused models, interpreters.

Expensive artefacts are built once per session; tests never depend on each other's order
(every test that trains first calls `initialize`, or builds its own interpreter).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if sys.__stdin__ is None:
    # Started with stdin closed (`0<&-`): Keras imports IPython, which asks pytest's stand-in
    # stdin for its encoding, which asserts sys.__stdin__ exists; `import tensorflow` then fails.
    # Give the session what `< /dev/null` would.
    sys.__stdin__ = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (lives as long as the session)

import pytest  # noqa: E402

from tests.fixtures.bases import tiny_uint8_classifier  # noqa: E402
from tests.helpers import compile_model, tensor_consumed_by, tensor_produced_by  # noqa: E402

# Every process a test starts must be ended by it: a survivor is killed and the test fails at
# teardown naming it (tests/process_guard.py).
from tests.process_guard import no_process_outlives_its_test  # noqa: E402,F401


@pytest.fixture(scope="session")
def tiny_classifier_path(tmp_path_factory) -> str:
    """A classic-style quantized classifier in miniature (tests/fixtures/bases.py), like
    mobilenet_v2_1.0_224_quant: uint8 image -> int8 conv -> pool -> 1x1 conv -> softmax."""
    path = tmp_path_factory.mktemp("bases") / "tiny_classifier_quant.tflite"
    path.write_bytes(tiny_uint8_classifier())
    return str(path)


@pytest.fixture(scope="session")
def tiny_pool_name(tiny_classifier_path) -> str:
    """The int8 average-pool output [1, 1, 1, 7]: the tiny classifier's bottleneck."""
    return tensor_produced_by(tiny_classifier_path, "MEAN")


@pytest.fixture(scope="session")
def tiny_conv_name(tiny_classifier_path) -> str:
    """The first convolution's output [1, 14, 10, 7]: not a bottleneck."""
    return tensor_produced_by(tiny_classifier_path, "CONV_2D")


@pytest.fixture(scope="session")
def small_mobilenet_path(tmp_path_factory) -> str:
    """The embedded MobileNetV2 at test size: alpha 0.35, 96x96, int8, synthetic weights."""
    from tflite_transfer.compiler.base import mobilenet

    converted = mobilenet.build_default_mobilenet_v2(alpha=0.35, image_size=96,
                                                      num_calibration_images=8, progress=lambda m: None)
    path = tmp_path_factory.mktemp("bases") / "mobilenet_v2_0.35_96_int8.tflite"
    path.write_bytes(converted.tflite)
    return str(path)


@pytest.fixture(scope="session")
def small_mobilenet_map_name(small_mobilenet_path) -> str:
    """The small MobileNetV2's last feature map [1, 3, 3, 1280] (what its global pooling reads):
    a spatial cut, like the 7x7x1280 map TensorFlow's example app trains on at 224."""
    return tensor_consumed_by(small_mobilenet_path, "MEAN")


@pytest.fixture(scope="session")
def tiny_fused(tiny_classifier_path, tiny_pool_name):
    """A softmax head (SGD) on the tiny classifier cut at its pool."""
    return compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1)


@pytest.fixture(scope="session")
def small_fused(small_mobilenet_path):
    """An MLP head (Adam) on the small MobileNetV2."""
    return compile_model(small_mobilenet_path, head="mlp:16", num_classes=4, optimizer="adam",
                         learning_rate=0.01)


# Compiled models as files, for the runtime.
@pytest.fixture(scope="session")
def tiny_model_path(tiny_fused, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("models") / "tiny_transfer.tflite"
    path.write_bytes(tiny_fused.model_bytes)
    return str(path)


@pytest.fixture(scope="session")
def small_model_path(small_fused, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("models") / "small_transfer.tflite"
    path.write_bytes(small_fused.model_bytes)
    return str(path)


@pytest.fixture(scope="session")
def other_model_path(tiny_classifier_path, tiny_pool_name, tmp_path_factory) -> str:
    """Same base and head shape as tiny_model_path, other initial weights: another model."""
    result = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1, seed=7)
    path = tmp_path_factory.mktemp("models") / "other_transfer.tflite"
    path.write_bytes(result.model_bytes)
    return str(path)


@pytest.fixture(scope="session")
def stateful_files(tmp_path_factory):
    """Streaming bases keeping state in resource variables (tests/fixtures/stateful_bases.py):
    variant -> (path, StatefulBase), built on first use."""
    folder, built = tmp_path_factory.mktemp("stateful_bases"), {}

    def get(variant: str):
        if variant not in built:
            from tests.fixtures import stateful_bases

            base = stateful_bases.stateful_base(variant)
            path = folder / f"{variant}.tflite"
            path.write_bytes(base.tflite)
            built[variant] = (str(path), base)
        return built[variant]
    return get


@pytest.fixture(scope="session")
def stateful_compiled(stateful_files):
    """(variant, image batch, train batch) -> CompileResult of a softmax head on a stateful base."""
    results = {}

    def get(variant: str, image_batch=None, train_batch=None):
        key = (variant, image_batch, train_batch)
        if key not in results:
            path, base = stateful_files(variant)
            from tflite_transfer.compiler.passes import batch

            results[key] = compile_model(path, base.features, num_classes=3, learning_rate=0.1,
                                         batch_options=batch.BatchOptions(image_batch, train_batch))
        return results[key]
    return get
