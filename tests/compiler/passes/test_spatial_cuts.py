"""compiler/passes/cut.py at a spatial cut: a real base with no global pooling in front of the
cut (the small MobileNetV2 at its last feature map [b, 3, 3, 1280]) compiles with each adapter,
its bottleneck is the adapter applied to the original file's map, and it trains."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tests.helpers import colour_images, compile_model, tensor_produced_by
from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.runtime import TransferModel

BUILTIN = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # the same kernels on both sides


def reference_maps(base_path: str, map_name: str, images: np.ndarray) -> np.ndarray:
    """The original base file's map at the cut, dequantized: LiteRT keeping every tensor."""
    reference = Interpreter(model_path=base_path, experimental_preserve_all_tensors=True,
                            experimental_op_resolver_type=BUILTIN)
    reference.allocate_tensors()
    cut = next(d for d in reference.get_tensor_details() if d["name"] == map_name)
    scale, zero_point = cut["quantization"]
    maps = []
    for image in images:
        reference.set_tensor(reference.get_input_details()[0]["index"], image[None])
        reference.invoke()
        maps.append((reference.get_tensor(cut["index"]).astype(np.float32) - zero_point) * scale)
    return np.concatenate(maps)


def images(count: int) -> np.ndarray:
    photos, labels = colour_images(count, seed=3, shape=(96, 96, 3), classes=3)
    return photos.astype(np.float32), labels


@pytest.mark.parametrize("adapter, pool", [("mean", np.mean), ("max", np.max)])
def test_pooling_adapters_compile_pool_the_original_map_and_train(small_mobilenet_path, small_mobilenet_map_name,
                                                                   adapter, pool):
    result = compile_model(small_mobilenet_path, small_mobilenet_map_name, verify_steps=3, num_classes=3,
                           optimizer="adam", learning_rate=0.001, interface={"bottleneck_adapter": adapter})
    assert result.parity.max_relative_difference < 1e-5
    assert result.metadata.bottleneck_adapter == {"kind": adapter, "cut_shape": [3, 3, 1280]}
    model = TransferModel.open(result.model_bytes)
    photos, labels = images(4)
    expected = pool(reference_maps(small_mobilenet_path, small_mobilenet_map_name, photos[:3]), axis=(1, 2))
    builtin = Interpreter(model_content=result.model_bytes, experimental_op_resolver_type=BUILTIN)
    got = builtin.get_signature_runner("load")(image=photos[:3])["bottleneck"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    model.add_samples(photos, labels)
    losses = model.fit(epochs=60, batch_size=6, progress=False, imprint=False)  # from the compiled weights
    assert losses[-1] < 0.5 * losses[0], losses
    assert np.mean(model.predict(photos).argmax(axis=1) == labels) >= 0.9


def test_a_spatial_cut_without_an_adapter_lists_them(small_mobilenet_path, small_mobilenet_map_name):
    with pytest.raises(InvalidInputError, match=r"\[-1, 3, 3, 1280\] int8 is a spatial map; choose "
                                                r"--bottleneck_adapter: flatten \(11520 features\), "
                                                r"mean \(1280 features\), max \(1280 features\)$") as refused:
        compile_model(small_mobilenet_path, small_mobilenet_map_name, num_classes=3)
    assert "\n" not in str(refused.value)


def test_an_adapter_at_a_flat_cut_is_refused(tiny_classifier_path):
    """A [batch, features] cut (the tiny classifier's reshaped logits) cannot take an adapter."""
    with pytest.raises(InvalidInputError, match=r"--bottleneck_adapter=max applies to a spatial cut; .*"
                                                r"\[-1, 5\] int8 is already \[batch, features\]"):
        compile_model(tiny_classifier_path, tensor_produced_by(tiny_classifier_path, "RESHAPE"),
                      num_classes=3, interface={"bottleneck_adapter": "max"})
