"""What the speed sweep trains: our compiled models for every head x optimizer, and the
shared inputs every peer gets (the same initial head weights and the same bottlenecks).

Our models are the product itself: `pipeline.compile_from_base` over a tiny int8 base whose
bottleneck has 1280 features (MobileNetV2's), so `train` is exactly what an app runs; only
`train` (bottleneck -> one step) is timed, so the base's size does not matter.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tests.fixtures.bases import pool_output_name, tiny_uint8_classifier

FEATURES = 1280
# (label, --head flag, classes): the 4-class headline and realistic heads.
HEADS = (("1280->4", "softmax", 4), ("1280->100", "softmax", 100),
         ("1280->1000", "softmax", 1000), ("mlp:256->100", "mlp:256", 100))
OPTIMIZERS = ("sgd", "adam")
BATCHES = (1, 8, 32)
LEARNING_RATE = 0.001


@dataclasses.dataclass(frozen=True)
class Subject:
    """One head x optimizer: our model file and what a peer needs to build the same head."""
    head_label: str
    optimizer: str
    model_path: str
    weights_path: str                    # .npz: every kernel [units, inputs] and bias, initial
    layers: tuple[dict, ...]             # {"kernel", "bias", "activation", "shape": [units, inputs]}
    state_bytes: int                     # everything `save` returns

    @property
    def key(self) -> str:
        return f"{self.head_label}|{self.optimizer}"

    def peer_request(self, inputs_dir: str) -> dict:
        return {"weights": self.weights_path, "layers": list(self.layers), "optimizer": self.optimizer,
                "learning_rate": LEARNING_RATE, "inputs": inputs_dir}


def build_subjects(workdir: Path, heads=HEADS, optimizers=OPTIMIZERS, progress=print) -> list[Subject]:
    from tflite_transfer.compiler.base import sources

    # A MobileNetV2-wide bottleneck from a base that converts in seconds: only the head is timed.
    from tflite_transfer.compiler import pipeline
    from tflite_transfer.compiler.head import training_graph
    base_path = workdir / "base.tflite"
    base_path.write_bytes(tiny_uint8_classifier(image_shape=(4, 4, 3), features=FEATURES, kernel=1, seed=2))
    pool = pool_output_name(str(base_path))
    base = sources.load_base(sources.BaseOptions(base=str(base_path), base_output=pool), lambda m: None)
    subjects = []
    for label, flag, classes in heads:
        for optimizer in optimizers:
            progress(f"  compiling {label} {optimizer}")
            result = pipeline.compile_from_base(
                base, pipeline.HeadOptions(head=flag, num_classes=classes, optimizer=optimizer,
                                           learning_rate=LEARNING_RATE),
                verify_steps=0, progress=lambda m: None)
            stem = f"{label.replace('->', '_').replace(':', '')}_{optimizer}"
            model_path = workdir / f"{stem}.tflite"
            model_path.write_bytes(result.model_bytes)
            state = result.head.initial_state
            layers = tuple({"kernel": kernel, "bias": bias, "activation": layer.activation,
                            "shape": list(state[kernel].shape)}
                           for (kernel, bias), layer in zip(training_graph.weight_names(result.head.head),
                                                            result.head.head.layers))
            weights_path = workdir / f"{stem}_weights.npz"
            np.savez(weights_path, **{name: state[name] for layer in layers for name in (layer["kernel"], layer["bias"])})
            subjects.append(Subject(label, optimizer, str(model_path), str(weights_path), layers,
                                    int(sum(v.nbytes for v in state.values()))))
    return subjects


def write_inputs(directory: Path, num_classes: dict[int, None] | tuple[int, ...], batches=BATCHES) -> str:
    """Bottlenecks like pooled post-ReLU features (uniform [0, 1)) and class ids < the smallest
    class count, one file pair per batch; every worker reads the same files."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    smallest = min(num_classes)
    for batch in batches:
        np.save(directory / f"bottleneck_{batch}.npy", rng.random((batch, FEATURES), dtype=np.float32))
        np.save(directory / f"label_{batch}.npy", rng.integers(0, smallest, batch).astype(np.int64))
    (directory / "inputs.json").write_text(json.dumps({"features": FEATURES, "batches": list(batches)}))
    return str(directory)
