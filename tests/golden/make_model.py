"""Compiles the golden vectors' real model once (needs TensorFlow; the generator does not):

    python -m tests.golden.make_model        # rewrites tests/golden/vectors/model.tflite

A softmax head with Adam (so the state has optimizer slots) on the tests' tiny uint8
classifier (tests/fixtures/bases.py) cut at its average pool: 7 features, 3 classes, uint8
images [16, 12, 3], any batch, contract version 2 with its model digest. Converter output
differs between TensorFlow versions, so the file is committed and only rebuilt on purpose;
`python -m tests.golden.generate` then derives every vector that depends on it (its metadata
record, checkpoints for its fingerprint and state, damaged copies) from the committed bytes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.golden.generate import GOLDEN_DIR

MODEL_PATH = GOLDEN_DIR / "vectors" / "model.tflite"
LABELS = ("cat", "dog", "fox")


def compile_golden_model() -> bytes:
    from tests.fixtures.bases import pool_output_name, tiny_uint8_classifier
    from tests.helpers import compile_model

    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory) / "tiny_classifier_quant.tflite"
        base.write_bytes(tiny_uint8_classifier())
        compiled = compile_model(str(base), pool_output_name(str(base)), num_classes=len(LABELS),
                                 labels=LABELS, optimizer="adam", learning_rate=0.01)
    return compiled.model_bytes


def main() -> int:
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    MODEL_PATH.write_bytes(compile_golden_model())
    print(f"wrote {MODEL_PATH} ({MODEL_PATH.stat().st_size} bytes); now run python -m tests.golden.generate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
