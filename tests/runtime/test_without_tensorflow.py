"""The runtime's promise: numpy + LiteRT only. Checked in a process where importing
tensorflow (or keras) raises, running the whole lifecycle."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent('''
    import importlib.abc, json, sys

    class BlockTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTensorFlow())
    import numpy as np
    from tflite_transfer.runtime import TransferModel

    model_path, checkpoint_path = sys.argv[1], sys.argv[2]
    model = TransferModel.open(model_path)
    model.set_learning_rate(1.0)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6).astype(np.int32)
    images = rng.integers(0, 90, (18, 16, 12, 3)).astype(np.int32)
    for index, label in enumerate(labels):
        images[index, ..., label] += 150
    images = images.astype(np.uint8)
    model.add_samples(images, labels)
    losses = model.fit(epochs=20, batch_size=6, progress=False)
    model.save_checkpoint(checkpoint_path)
    saved = model.get_state()
    model.fit(epochs=2, progress=False)
    model.restore_checkpoint(checkpoint_path)
    exact = all(np.array_equal(v, saved[k]) for k, v in model.get_state().items())
    model.reset()
    model.imprint()
    print(json.dumps({
        "interpreter": model.interpreter_name,
        "first_loss": losses[0], "last_loss": losses[-1],
        "accuracy": float(np.mean(model.predict(images).argmax(1) == labels)),
        "restore_exact": exact,
        "tensorflow_loaded": any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules),
    }))
''')


def test_lifecycle_runs_with_tensorflow_unimportable(tiny_model_path, tmp_path):
    process = subprocess.run([sys.executable, "-c", _SCRIPT, tiny_model_path, str(tmp_path / "c.ckpt")],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["interpreter"] == "ai_edge_litert"
    assert result["tensorflow_loaded"] is False
    assert result["last_loss"] < 0.5 * result["first_loss"]
    assert result["restore_exact"] is True
    assert result["accuracy"] >= 0.9


def test_the_block_really_blocks():
    """The hook above must make `import tensorflow` fail, or the test proves nothing."""
    probe = _SCRIPT.split("import numpy as np")[0] + "import tensorflow\n"
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert process.returncode != 0 and "tensorflow is blocked" in process.stderr
