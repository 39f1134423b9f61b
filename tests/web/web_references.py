"""References the Python runtime computes for the web runtime's Node tests (written into
reference.json by web_fixtures.node_fixtures): a contract version 3 model (the example app's
names, a [0, 1] input, one-hot labels), a stateful base's stream and checkpoints, the divergence
watch on features with |x|^2 ~ 1e7, and Python's number formatting."""

from __future__ import annotations

import numpy as np

from tests.helpers import colour_images
from tests.runtime.test_training_watch import landmark_like
from tflite_transfer.runtime import TransferModel
from tflite_transfer.runtime.errors import TrainingDivergedError

# compile-transfer --names=tf_example_app --input_range=0,1 --label_format=one_hot
APP_INTERFACE = {"names": "tf_example_app", "input_range": "0,1", "label_format": "one_hot"}


def _tensors(state: dict) -> dict:
    return {name: {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.ravel().tolist()}
            for name, value in state.items()}


def app_reference(model_path) -> dict:
    """Inputs as the app feeds them (pixels / 255), soft label rows, and what Python makes of them."""
    images, labels = colour_images(2, seed=8)                      # 6 images, 3 colour classes
    inputs = images.astype(np.float32) / 255.0
    soft = np.full((len(labels), 3), 0.05, np.float32)
    soft[np.arange(len(labels)), labels] = 0.9
    model = TransferModel.open(model_path)
    bottlenecks = model.load(inputs)
    model.add_samples(inputs, soft)
    model.imprint()
    imprinted = model.get_state()
    predictions = model.predict(inputs)
    steps = [model.train_bottlenecks(bottlenecks[start:start + 4], np.eye(3, dtype=np.float32)[labels[start:start + 4]])
             for start in (0, 2)]
    return {"inputs": inputs.ravel().tolist(), "labels": labels.tolist(), "soft": soft.ravel().tolist(),
            "bottlenecks": bottlenecks.ravel().tolist(), "imprinted": _tensors(imprinted),
            "predictions": predictions.ravel().tolist(), "losses": steps, "trained": _tensors(model.get_state())}


def stream_reference(model_path, directory) -> dict:
    """A stream of 6 frames through a stateful base's `load`, one call each; checkpoints of the
    fresh stream (a running maximum at -inf) and after 3 frames, written by Python."""
    frames = np.random.default_rng(3).normal(size=(6, 6)).astype(np.float32)
    model = TransferModel.open(model_path)
    model.save_checkpoint(directory / "stream_start.ckpt")
    first = model.load(frames[:3])
    model.save_checkpoint(directory / "stream_after3.ckpt")
    rest = model.load(frames[3:])
    return {"frames": frames.ravel().tolist(), "bottlenecks": np.concatenate([first, rest]).ravel().tolist(),
            "state_after_all": _tensors({name: value for name, value in model.get_state().items()
                                         if model.metadata.state_entry(name).role == "base_state"})}


def divergence_reference(model_path) -> dict:
    """The Python case of tests/runtime/test_training_watch.py on a train batch of 4, in sample
    order (shuffle=False: the JS runtime's batches are then the same): the old default rate 0.001
    on |x|^2 ~ 1e7 diverges and is rolled back; half the stable rate trains."""
    bottlenecks, labels = landmark_like(24, 1e7)
    model = TransferModel.open(model_path)
    model.add_bottlenecks(bottlenecks, labels)
    model.set_learning_rate(0.001)
    try:
        model.fit(epochs=30, batch_size=4, shuffle=False, progress=False, imprint=False)
    except TrainingDivergedError as error:
        diverged = {"message": str(error), "losses": list(error.losses), "stable_learning_rate": error.stable_learning_rate}
    else:
        raise AssertionError("the Python reference run did not diverge: the fixture no longer tests the watch")
    calm_bottlenecks, calm_labels = landmark_like(24, 1e7, seed=1)
    calm = TransferModel.open(model_path)
    calm.add_bottlenecks(calm_bottlenecks, calm_labels)
    calm_rate = 0.5 * calm.stable_learning_rate()
    calm.set_learning_rate(calm_rate)
    calm_losses = calm.fit(epochs=40, batch_size=4, shuffle=False, progress=False, imprint=False)
    return {"bottlenecks": bottlenecks.ravel().tolist(), "labels": labels.tolist(), "learning_rate": 0.001, "epochs": 30,
            **diverged, "calm": {"bottlenecks": calm_bottlenecks.ravel().tolist(), "labels": calm_labels.tolist(),
                                 "learning_rate": calm_rate, "epochs": 40, "losses": calm_losses}}


def format_reference() -> list:
    """[value, precision, format(value, f'.{precision}g')]: Python's own text for numbers a
    message shows (halves that round to even, exponents, trailing zeros, subnormals)."""
    rng = np.random.default_rng(12)
    values = [0.001, 1.55e-7, 0.125, 0.375, 2.5, 9.995, 99999.5, 123456.0, 1e16, 1e-5, 0.0001, 6415.3, 3.0, 0.0,
              -0.0, 5e-324, 1.7976931348623157e308, 0.15, 999.95, 0.9999996, -2.5e-9]
    values += (rng.normal(size=30) * 10.0 ** rng.integers(-9, 12, 30)).tolist()
    values += [float(np.float32(v)) for v in rng.uniform(0, 1e-3, 10)]
    return [[value, precision, format(value, f".{precision}g")] for value in values for precision in (1, 2, 3, 4, 6)]
