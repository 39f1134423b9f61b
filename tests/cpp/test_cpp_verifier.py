"""TFLite's own flatbuffer verifier (`tflite::Verify` with the builtin op resolver, Debian's
libtensorflow-lite 2.14, the check MediaPipe's loader runs) on every model kind the compiler
writes: each head, loss and optimizer, fixed batches, and exported models. The program is
tests/cpp/verifier/verify_model.cc, built in the C++ testing root. The same files and the
refused mutants (tests/fixtures/verifier_mutants.py) also go through the Python rules, which
must agree with it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.cpp_verifier import build_verify_model, run_verify_model
from tests.fixtures.verifier_mutants import MUTANTS, VALID_EDITS, mutant_bytes
from tests.helpers import compile_model, random_images
from tflite_transfer.compiler.checks import verifier_rules
from tflite_transfer.compiler.errors import VerificationError

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
HEADS = ("softmax", "mlp:40")          # 40 units: the MLP's first layer has the batch dispatch IF
EXPORTED = ("sgd-softmax", "adam-mlp:40", "mse", "batch-1,4", "mobilenet")


@pytest.fixture(scope="module")
def verify_model(tmp_path_factory) -> str:
    return build_verify_model(tmp_path_factory.mktemp("verifier_build"))


@pytest.fixture(scope="module")
def every_model_kind(tiny_classifier_path, tiny_pool_name, small_fused, tmp_path_factory) -> dict[str, bytes]:
    """Name -> bytes: each optimizer x head, the MSE loss, fixed batches on the tiny base; the
    MLP (Adam) on the small int8 MobileNetV2 (its real op set); exports of five of them."""
    from tflite_transfer.compiler.export import inference_model
    from tflite_transfer.compiler.passes import batch
    from tflite_transfer.runtime import TransferModel

    def build(**head) -> bytes:
        fixed = head.pop("batch", None)
        return compile_model(tiny_classifier_path, tiny_pool_name, learning_rate=0.01, batch_options=(
            batch.parse_batch_flag(fixed) if fixed else None), **head).model_bytes

    models = {f"{o}-{h}": build(optimizer=o, head=h, num_classes=3) for o in OPTIMIZERS for h in HEADS}
    models["mse"] = build(loss="mse", num_classes=2)
    models["batch-1,4"] = build(num_classes=3, batch="1,4")
    models["mobilenet"] = small_fused.model_bytes
    work = tmp_path_factory.mktemp("verifier_models")
    for name in EXPORTED:
        trainable = TransferModel.open(models[name])
        images = random_images(trainable.image_shape, trainable.image_dtype, 4, seed=3)
        labels = np.arange(4, dtype=np.int32) % trainable.num_classes
        targets = (labels if trainable.classifies
                   else np.random.default_rng(0).normal(size=(len(images), trainable.num_classes)).astype(np.float32))
        trainable.add_samples(images, targets)
        trainable.set_learning_rate(0.001)   # Adam at the compiled 0.01 overshoots on 4 random images (fit stops it)
        trainable.fit(epochs=2, batch_size=4, progress=False)
        trainable.save_checkpoint(work / f"{name}.ckpt")
        (work / f"{name}.tflite").write_bytes(models[name])
        models[f"exported {name}"] = inference_model.export_files(
            str(work / f"{name}.tflite"), str(work / f"{name}.ckpt"), str(work / f"{name}-exported.tflite"))
    return models


def test_every_model_kind_passes_the_real_verifier(verify_model, every_model_kind, tmp_path):
    paths = []
    for name, data in every_model_kind.items():
        paths.append(tmp_path / f"{name.replace(' ', '_').replace(':', '_')}.tflite")
        paths[-1].write_bytes(data)
        verifier_rules.check_verifier_rules(data, name)  # the Python rules agree
    verdicts = run_verify_model(verify_model, paths)
    refused = {name: message for name, message in verdicts.items() if message != "ok"}
    assert not refused, f"TFLite's verifier refuses: {refused}"
    assert len(verdicts) == len(OPTIMIZERS) * len(HEADS) + 3 + len(EXPORTED)


def test_the_real_verifier_and_the_rules_agree_on_mutants(verify_model, tiny_fused, tmp_path):
    """The test can fail: the old defect (empty constants on buffer 0) and every other mutant
    are refused by the real verifier with the message the Python rules give; valid edits pass."""
    paths, expected = [], {}
    for name, edit, *message in (*VALID_EDITS, *MUTANTS):
        path = tmp_path / f"{name.replace(' ', '_')}.tflite"
        path.write_bytes(mutant_bytes(tiny_fused.model_bytes, edit))
        paths.append(path)
        expected[path.name] = message[0] if message else "ok"
    verdicts = run_verify_model(verify_model, paths)
    for path in paths:
        verdict, wanted = verdicts[path.name], expected[path.name]
        if wanted == "ok":
            assert verdict == "ok", f"{path.name}: the real verifier refuses a valid edit: {verdict}"
            verifier_rules.check_verifier_rules(path.read_bytes())
            continue
        assert wanted in verdict, f"{path.name}: the real verifier says {verdict!r}"
        with pytest.raises(VerificationError) as refused:
            verifier_rules.check_verifier_rules(path.read_bytes())
        assert verdict in str(refused.value), f"{path.name}: C++ {verdict!r}, Python {refused.value}"
