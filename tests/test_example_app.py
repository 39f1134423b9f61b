"""TensorFlow's own example app, replayed: tensorflow/examples lite/examples/model_personalization
(TransferLearningHelper.kt) calls a model exactly this way. It reads H and W from input tensor 0
of the default subgraph, then, through the signature runner:
    load({"feature": float [1, H, W, 3] = pixels / 255}) -> {"bottleneck": [1, N]}   per sample
    train({"bottleneck": [20, N], "label": float one-hot [20, 4]}) -> {"loss": FloatBuffer(1)}
    infer({"feature": [1, H, W, 3]}) -> {"output": [1, 4]}
with N the unpooled MobileNetV2 map flattened (7x7x1280 at 224; here the small fixture's 3x3x1280).
The model is compiled by the CLI with the documented recipe; the replay uses ai_edge_litert only.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from test_cli_helpers import run_cli
from tflite_transfer.runtime import contract

BATCH, CLASSES, PER_CLASS = 20, 4, 10        # the app's EXPECTED_BATCH_SIZE and its four classes
RECIPE = ("--names=tf_example_app", "--input_range=0,1", "--label_format=one_hot",
          "--bottleneck_adapter=flatten", "--num_classes=4", "--optimizer=adam", "--learning_rate=0.0001")


@pytest.fixture(scope="module")
def app_model(small_mobilenet_path, small_mobilenet_map_name, tmp_path_factory):
    output = tmp_path_factory.mktemp("example_app") / "model.tflite"
    # A .tflite base does not say which values it takes: --base_input_range states it (the
    # embedded base needs no such flag, see the recipe in BUILD.md).
    process = run_cli(f"--base={small_mobilenet_path}", f"--base_output={small_mobilenet_map_name}",
                      "--base_input_range=0,255", *RECIPE, f"--output={output}")
    assert process.returncode == 0, process.stderr[-2000:]
    return str(output)


def _photos(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 photos [40, 96, 96, 3] whose class is their dominant colour (class 3: grey)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    photos = rng.integers(0, 80, (len(labels), 96, 96, 3))
    for index, label in enumerate(labels):
        if label < 3:
            photos[index, ..., label] += 170
        else:
            photos[index] += 120
    return photos.astype(np.uint8), labels


def _batches(count: int, rng: np.random.Generator):
    """The app's trainingBatches(20) over one shuffle: whole batches, the last one ending at
    the last sample (it may repeat samples of the one before)."""
    order = rng.permutation(count)
    for start in range(0, count, BATCH):
        end = min(start + BATCH, count)
        yield order[end - BATCH:end] if end - start < BATCH else order[start:end]


def test_the_example_app_call_sequence_runs_unchanged(app_model):
    interpreter = Interpreter(model_path=app_model)
    # init: targetHeight/targetWidth = getInputTensor(0).shape()[1], [2] (plain invoke's subgraph 0)
    first_input = interpreter.get_input_details()[0]
    assert list(first_input["shape"]) == [1, 96, 96, 3] and first_input["dtype"] == np.float32
    height, width = int(first_input["shape"][1]), int(first_input["shape"][2])
    load = interpreter.get_signature_runner("load")
    train = interpreter.get_signature_runner("train")
    infer = interpreter.get_signature_runner("infer")
    assert interpreter.get_signature_list()["train"] == {"inputs": ["bottleneck", "label"], "outputs": ["loss"]}

    photos, labels = _photos(seed=0)
    assert photos.shape[1:3] == (height, width)
    # addSample: NormalizeOp(0, 255), load one image, keep bottleneck[0] with encoding(class).
    samples = []
    for photo, label in zip(photos, labels):
        outputs = load(feature=(photo[None].astype(np.float32) / 255.0))
        assert list(outputs) == ["bottleneck"] and outputs["bottleneck"].shape == (1, 3 * 3 * 1280)
        samples.append((outputs["bottleneck"][0], np.eye(CLASSES, dtype=np.float32)[label]))
    # startTraining: epochs of shuffled batches of 20, loss = FloatBuffer.allocate(1).
    rng = np.random.default_rng(1)
    epoch_losses = []
    for _ in range(15):
        losses = []
        for batch in _batches(len(samples), rng):
            bottlenecks = np.stack([samples[i][0] for i in batch])
            one_hot = np.stack([samples[i][1] for i in batch])
            outputs = train(bottleneck=bottlenecks, label=one_hot)
            assert list(outputs) == ["loss"] and outputs["loss"].shape == (1,)  # fits FloatBuffer(1)
            losses.append(float(outputs["loss"][0]))
        epoch_losses.append(float(np.mean(losses)))
    assert np.isfinite(epoch_losses).all()
    assert epoch_losses[-1] < 0.5 * epoch_losses[0], epoch_losses
    # classify: infer one image into TensorBuffer [1, 4].
    correct = 0
    for photo, label in zip(photos, labels):
        outputs = infer(feature=photo[None].astype(np.float32) / 255.0)
        assert list(outputs) == ["output"] and outputs["output"].shape == (1, CLASSES)
        np.testing.assert_allclose(outputs["output"].sum(), 1.0, rtol=1e-5)
        correct += int(outputs["output"].argmax() == label)
    assert correct >= 0.9 * len(labels)


def test_load_of_pixels_over_255_is_the_base_map_of_the_pixels(app_model, small_mobilenet_path,
                                                               small_mobilenet_map_name):
    """The scaling inside the model against an independent reference: the original base file,
    run on the raw 0..255 pixels, read at the cut tensor (LiteRT's preserve_all_tensors)."""
    photos, _ = _photos(seed=2)
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # the same kernels on both sides
    reference = Interpreter(model_path=small_mobilenet_path, experimental_preserve_all_tensors=True,
                            experimental_op_resolver_type=builtin)
    reference.allocate_tensors()
    cut = next(d for d in reference.get_tensor_details() if d["name"] == small_mobilenet_map_name)
    scale, zero_point = cut["quantization"]
    load = Interpreter(model_path=app_model, experimental_op_resolver_type=builtin).get_signature_runner("load")
    for photo in photos[::7]:
        reference.set_tensor(reference.get_input_details()[0]["index"], photo[None].astype(np.float32))
        reference.invoke()
        expected = (reference.get_tensor(cut["index"]).reshape(1, -1).astype(np.float32) - zero_point) * scale
        got = load(feature=photo[None].astype(np.float32) / 255.0)["bottleneck"]
        # x / 255 * 255 is the pixel within a float32 rounding; the int8 base can move an
        # element by one quantization step where that rounding crosses a boundary.
        assert np.abs(got - expected).max() <= scale * 1.01
        assert np.mean(np.abs(got - expected) < scale / 2) > 0.99


def test_the_metadata_records_how_the_app_calls_it(app_model):
    from tflite_transfer.runtime.interpreter import read_metadata

    with open(app_model, "rb") as file:
        metadata = read_metadata(file.read(), app_model)
    assert metadata.contract_version == 3
    assert metadata.tensor_names == contract.TensorNames("feature", "bottleneck", "label", "loss", "output")
    assert metadata.input == contract.InputSpec("image", "float32", (96, 96, 3), (0.0, 1.0), (0.0, 255.0))
    assert metadata.label == contract.LabelSpec("one_hot", "float32", (CLASSES,))
    assert metadata.bottleneck_adapter == {"kind": "flatten", "cut_shape": [3, 3, 1280]}
