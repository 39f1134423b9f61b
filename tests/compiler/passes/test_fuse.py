"""The fused model's signature contract, run in the real interpreters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tests.helpers import interpreter, random_images

from tflite_transfer.runtime import contract

INTERPRETERS = ["litert", "tf.lite"]


def image_spec(runner_interpreter):
    detail = runner_interpreter.get_signature_runner("load").get_input_details()["image"]
    return tuple(detail["shape_signature"][1:]), detail["dtype"]


def images_for(model_interpreter, batch, seed=0):
    shape, dtype = image_spec(model_interpreter)
    return random_images(shape, dtype, batch, seed)


def base_alone(base_path: str, images: np.ndarray, output_tensor: str | None, xnnpack: bool, kind: str):
    """Runs the user's base file by itself and returns the bottleneck as float32 [batch, features]."""
    with open(base_path, "rb") as handle:
        data = handle.read()
    runner = interpreter(data, kind, xnnpack)
    if output_tensor is None:
        runner.resize_tensor_input(runner.get_input_details()[0]["index"], images.shape)
        runner.allocate_tensors()
        runner.set_tensor(runner.get_input_details()[0]["index"], images)
        runner.invoke()
        return runner.get_tensor(runner.get_output_details()[0]["index"])
    return cut_tensor_alone(data, images, output_tensor)


def cut_tensor_alone(data: bytes, images: np.ndarray, output_tensor: str):
    """The quantized values and (scale, zero point) of an inner tensor of the base, per image."""
    import tensorflow as tf

    values = []
    for image in images:  # the classic model has a fixed batch of 1
        full = tf.lite.Interpreter(
            model_content=data, experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        full.allocate_tensors()
        full.set_tensor(full.get_input_details()[0]["index"], image[None])
        full.invoke()
        detail = next(d for d in full.get_tensor_details() if d["name"] == output_tensor)
        values.append(full.get_tensor(detail["index"]).reshape(-1))
    return np.stack(values), detail["quantization"]


@pytest.mark.parametrize("kind", INTERPRETERS)
@pytest.mark.parametrize("fixture", ["tiny_fused", "small_fused"])
def test_every_signature_runs(request, fixture, kind):
    result = request.getfixturevalue(fixture)
    model = interpreter(result.model_bytes, kind)
    assert sorted(model.get_signature_list()) == sorted(contract.SIGNATURES)
    images = images_for(model, batch=3)
    label = np.array([0, 1, 2], np.int32)
    bottleneck = model.get_signature_runner("load")(image=images)["bottleneck"]
    assert bottleneck.shape == (3, result.metadata.bottleneck_size)
    probabilities = model.get_signature_runner("infer")(image=images)["probabilities"]
    assert probabilities.shape == (3, result.metadata.num_outputs)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(model.get_signature_runner("train")(bottleneck=bottleneck, label=label)["loss"]).all()
    assert np.isfinite(model.get_signature_runner("train_images")(image=images, label=label)["loss"]).all()
    state = model.get_signature_runner("save")()
    assert sorted(state) == sorted(result.head.initial_state)
    assert state["step"] == 2
    assert model.get_signature_runner("restore")(**state)["step"][0] == 2
    assert model.get_signature_runner("set_learning_rate")(
        learning_rate=np.array([0.5], np.float32))["learning_rate"][0] == 0.5
    assert model.get_signature_runner("initialize")()["step"][0] == 0


@pytest.mark.parametrize("xnnpack", [True, False])
@pytest.mark.parametrize("kind", INTERPRETERS)
def test_load_equals_the_small_base_alone_bit_for_bit(small_fused, small_mobilenet_path, kind, xnnpack):
    model = interpreter(small_fused.model_bytes, kind, xnnpack)
    images = images_for(model, batch=4, seed=7)
    loaded = model.get_signature_runner("load")(image=images)["bottleneck"]
    expected = base_alone(small_mobilenet_path, images, None, xnnpack, kind)
    assert loaded.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(loaded, expected)


def test_load_reproduces_the_cut_classifier_bit_for_bit(tiny_fused, tiny_classifier_path, tiny_pool_name):
    """The tiny base is cut at its int8 pool: load must carry exactly the base's quantized
    values (then dequantized by our adapter)."""
    model = interpreter(tiny_fused.model_bytes, "tf.lite", xnnpack=False)
    images = images_for(model, batch=3, seed=3)
    loaded = model.get_signature_runner("load")(image=images)["bottleneck"]
    with open(tiny_classifier_path, "rb") as handle:
        quantized, (scale, zero_point) = cut_tensor_alone(handle.read(), images, tiny_pool_name)
    assert quantized.dtype == np.int8
    np.testing.assert_array_equal(np.round(loaded / scale + zero_point).astype(np.int8), quantized)
    np.testing.assert_allclose(loaded, scale * (quantized.astype(np.float32) - zero_point),
                               rtol=1e-6, atol=1e-5 * scale)


@pytest.mark.parametrize("fixture", ["tiny_fused", "small_fused"])
def test_infer_equals_load_then_head(request, fixture):
    result = request.getfixturevalue(fixture)
    model = interpreter(result.model_bytes)
    model.get_signature_runner("initialize")()
    images = images_for(model, batch=5, seed=11)
    bottleneck = model.get_signature_runner("load")(image=images)["bottleneck"]
    state = model.get_signature_runner("save")()
    activation = bottleneck.astype(np.float64)
    for index, layer in enumerate(result.head.head.layers):
        activation = activation @ state[f"{layer.name}_kernel"].T + state[f"{layer.name}_bias"]
        if index < len(result.head.head.layers) - 1:
            activation = np.maximum(activation, 0.0)
    expected = np.exp(activation - activation.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    probabilities = model.get_signature_runner("infer")(image=images)["probabilities"]
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)


def test_plain_invoke_runs_infer(tiny_fused):
    """Subgraph 0 is infer, so apps without the signature API still get inference."""
    model = interpreter(tiny_fused.model_bytes)
    images = images_for(model, batch=1, seed=5)
    model.allocate_tensors()
    model.set_tensor(model.get_input_details()[0]["index"], images)
    model.invoke()
    plain = model.get_tensor(model.get_output_details()[0]["index"])
    np.testing.assert_array_equal(plain, model.get_signature_runner("infer")(image=images)["probabilities"])


def separable_bottlenecks(size: int, classes: int, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, size)) * 2.0
    labels = np.repeat(np.arange(classes), per_class).astype(np.int32)
    features = centres[labels] + rng.normal(size=(len(labels), size)) * 0.5
    return features.astype(np.float32), labels


@pytest.mark.parametrize("fixture", ["tiny_fused", "small_fused"])
def test_loss_falls_and_accuracy_rises(request, fixture):
    result = request.getfixturevalue(fixture)
    model = interpreter(result.model_bytes)
    model.get_signature_runner("initialize")()
    features, labels = separable_bottlenecks(result.metadata.bottleneck_size,
                                             result.metadata.num_outputs, 8, seed=2)
    train = model.get_signature_runner("train")
    losses = [train(bottleneck=features, label=labels)["loss"][0] for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]
    logits_model = model.get_signature_runner("save")()
    assert logits_model["step"] == 40
    model.get_signature_runner("initialize")()


def test_save_train_restore_returns_exactly(small_fused):
    model = interpreter(small_fused.model_bytes)
    model.get_signature_runner("initialize")()
    train, save = model.get_signature_runner("train"), model.get_signature_runner("save")
    features, labels = separable_bottlenecks(small_fused.metadata.bottleneck_size, 4, 3, seed=4)
    train(bottleneck=features, label=labels)
    saved = {k: v.copy() for k, v in save().items()}
    next_loss = train(bottleneck=features, label=labels)["loss"][0]
    for _ in range(3):
        train(bottleneck=features, label=labels)
    assert any(not np.array_equal(saved[k], v) for k, v in save().items())
    model.get_signature_runner("restore")(**saved)
    for name, value in save().items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)
    assert train(bottleneck=features, label=labels)["loss"][0] == next_loss


def test_initialize_resets_to_compiled_values(small_fused):
    model = interpreter(small_fused.model_bytes)
    features, labels = separable_bottlenecks(small_fused.metadata.bottleneck_size, 4, 2, seed=5)
    model.get_signature_runner("set_learning_rate")(learning_rate=np.array([0.3], np.float32))
    model.get_signature_runner("train")(bottleneck=features, label=labels)
    model.get_signature_runner("initialize")()
    for name, value in model.get_signature_runner("save")().items():
        np.testing.assert_array_equal(value, small_fused.head.initial_state[name], err_msg=name)


def test_set_learning_rate_drives_the_step(tiny_fused):
    model = interpreter(tiny_fused.model_bytes)
    model.get_signature_runner("initialize")()
    features, labels = separable_bottlenecks(tiny_fused.metadata.bottleneck_size, 3, 2, seed=6)
    before = model.get_signature_runner("save")()
    model.get_signature_runner("set_learning_rate")(learning_rate=np.array([0.0], np.float32))
    model.get_signature_runner("train")(bottleneck=features, label=labels)
    after = model.get_signature_runner("save")()
    np.testing.assert_array_equal(after["dense_0_kernel"], before["dense_0_kernel"])
    model.get_signature_runner("set_learning_rate")(learning_rate=np.array([0.2], np.float32))
    model.get_signature_runner("train")(bottleneck=features, label=labels)
    moved = model.get_signature_runner("save")()["dense_0_kernel"]
    assert not np.array_equal(moved, before["dense_0_kernel"])


@settings(max_examples=8, deadline=None)
@given(batch=st.integers(min_value=1, max_value=9))
def test_any_batch_size(tiny_fused, batch):
    model = interpreter(tiny_fused.model_bytes)
    images = images_for(model, batch, seed=batch)
    label = (np.arange(batch) % 3).astype(np.int32)
    assert model.get_signature_runner("infer")(image=images)["probabilities"].shape == (batch, 3)
    assert model.get_signature_runner("train_images")(image=images, label=label)["loss"].shape == (1,)


def test_train_images_equals_load_then_train(tiny_fused):
    first, second = interpreter(tiny_fused.model_bytes), interpreter(tiny_fused.model_bytes)
    images = images_for(first, batch=4, seed=9)
    label = np.array([2, 0, 1, 1], np.int32)
    loss_images = first.get_signature_runner("train_images")(image=images, label=label)["loss"]
    bottleneck = second.get_signature_runner("load")(image=images)["bottleneck"]
    loss_cached = second.get_signature_runner("train")(bottleneck=bottleneck, label=label)["loss"]
    np.testing.assert_array_equal(loss_images, loss_cached)
    for name, value in first.get_signature_runner("save")().items():
        np.testing.assert_array_equal(value, second.get_signature_runner("save")()[name], err_msg=name)
