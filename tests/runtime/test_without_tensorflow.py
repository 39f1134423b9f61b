"""The runtime's promise: numpy + LiteRT only. Checked twice, running the whole lifecycle
(open a compiled model, train, checkpoint, restore, predict): in this environment with
`import tensorflow` made to raise, and in a fresh venv (no system site-packages) holding the
plain `pip install` of this repository, which must bring no TensorFlow at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

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
    TransferModel.open(model_path, verify_digest=False)  # the structure checks need no TensorFlow either
    model = TransferModel.open(model_path)
    model.set_learning_rate(1.0)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6).astype(np.int32)
    images = rng.integers(0, 90, (18, 16, 12, 3)).astype(np.int32)
    for index, label in enumerate(labels):
        images[index, ..., label] += 150
    images = images.astype(np.uint8)
    model.add_samples(images, labels)
    losses = model.fit(epochs=20, batch_size=6, progress=False, imprint=False)
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
        "package": __import__("tflite_transfer.runtime").runtime.__file__,
    }))
''')


@pytest.fixture(scope="session")
def plain_install(tmp_path_factory) -> Path:
    """The python of a fresh venv with the plain (runtime-only) install of this repository.

    The project's wheel is built once without build isolation (~7 s) and installed with this
    environment's pip into a venv made --without-pip (ensurepip alone took 22 s here); pip
    resolves numpy and ai-edge-litert from its index and cache (~45 s on this machine)."""
    workdir = tmp_path_factory.mktemp("plain_install")
    wheels, venv, source = workdir / "wheels", workdir / "venv", workdir / "source"
    # Built from a copy: building in the checkout leaves build/ and tflite_transfer.egg-info/
    # there, and that egg-info (the checkout is on sys.path) then hides the editable install's
    # metadata from every later test session (test_installation failed after this one ran).
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "node_modules", "__pycache__", ".hypothesis", ".pytest_cache", "results"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    quiet = dict(capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], **quiet)
    assert built.returncode == 0, built.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run([*pip, "--python", str(python), "install", "--quiet",
                                *map(str, wheels.glob("tflite_transfer-*.whl"))], **quiet)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return python


def test_plain_install_has_no_tensorflow_and_no_compiler_dependencies(plain_install):
    probe = ("import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None "
             "for m in ('tensorflow', 'keras', 'absl', 'numpy', 'ai_edge_litert', 'tflite_transfer')}))")
    found = json.loads(subprocess.run([str(plain_install), "-c", probe], capture_output=True, stdin=subprocess.DEVNULL, text=True,
                                      check=True, timeout=120, cwd="/").stdout)
    assert found == {"tensorflow": False, "keras": False, "absl": False, "numpy": True,
                     "ai_edge_litert": True, "tflite_transfer": True}


def test_compile_transfer_without_the_compiler_says_what_to_install(plain_install, tmp_path):
    process = subprocess.run([str(plain_install.parent / "compile-transfer"), f"--output={tmp_path / 'm.tflite'}"],
                             capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=120, cwd=tmp_path)
    assert process.returncode != 0 and process.stdout == ""
    lines = process.stderr.strip().splitlines()
    # The package is on no index: the hint names the wheel this venv was installed from.
    wheel = next((plain_install.parent.parent.parent / "wheels").glob("tflite_transfer-*.whl"))
    assert len(lines) == 1 and f"pip install '{wheel}[compiler]'" in lines[0], process.stderr
    assert not (tmp_path / "m.tflite").exists()


def test_lifecycle_in_the_plain_install(plain_install, tiny_model_path, tmp_path):
    """Outside the repository (cwd /), so the installed package, not the tree, is imported."""
    process = subprocess.run([str(plain_install), "-c", _SCRIPT, tiny_model_path, str(tmp_path / "c.ckpt")],
                             capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=300, cwd="/",
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(plain_install.parent.parent)), result["package"]
    check_lifecycle(result)


def test_lifecycle_runs_with_tensorflow_unimportable(tiny_model_path, tmp_path):
    process = subprocess.run([sys.executable, "-c", _SCRIPT, tiny_model_path, str(tmp_path / "c.ckpt")],
                             capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    check_lifecycle(json.loads(process.stdout.strip().splitlines()[-1]))


def check_lifecycle(result: dict) -> None:
    assert result["interpreter"] == "ai_edge_litert"
    assert result["tensorflow_loaded"] is False
    assert result["last_loss"] < 0.5 * result["first_loss"]
    assert result["restore_exact"] is True
    assert result["accuracy"] >= 0.9


def test_the_block_really_blocks():
    """The hook above must make `import tensorflow` fail, or the test proves nothing."""
    probe = _SCRIPT.split("import numpy as np")[0] + "import tensorflow\n"
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=120)
    assert process.returncode != 0 and "tensorflow is blocked" in process.stderr
