"""MediaPipe Tasks' ImageClassifier (PyPI `mediapipe`, the SDK Android/iOS/web apps use) runs
the exported model unchanged: its category names are the model's labels and its scores equal
our `infer` within 1e-5 on real images (Fashion-MNIST). Three inputs: a uint8 base (raw
pixels), a float base whose own TFLite Metadata normalization is carried over, and a float base
without metadata exported with --image_range. Needs mediapipe and Debian's
dataset-fashion-mnist: both installed in CI (the tests fail there, never skip, without them)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks.accuracy import fashion_mnist
from test_cli_helpers import run_cli
from tests.fixtures.bases import tiny_float_classifier
from tests.helpers import compile_model, tensor_produced_by
from tflite_transfer.compiler.export import inference_model, tflite_metadata
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.runtime import InferenceModel, TransferModel

CLASSES = (0, 1, 7)           # T-shirt/top, Trouser, Sneaker
LABELS = tuple(fashion_mnist.CLASS_NAMES[c] for c in CLASSES)
SCORE_TOLERANCE = 1e-5


def _require(condition: bool, what: str) -> None:
    if not condition:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(what)


@pytest.fixture(scope="module")
def vision():
    try:
        from mediapipe.tasks.python import vision as mediapipe_vision
    except ImportError:
        _require(False, "mediapipe is not installed (pip install mediapipe==1.2.2)")
    return mediapipe_vision


@pytest.fixture(scope="module")
def photos():
    """(uint8 [n, 28, 28] grey images, class index into CLASSES): real Fashion-MNIST images."""
    _require(fashion_mnist.is_available(), f"Fashion-MNIST not found: {fashion_mnist.INSTALL_HINT}")
    split = fashion_mnist.load_split("test")
    chosen = fashion_mnist.per_class_indices(split.labels, 8, np.random.default_rng(4), CLASSES)
    return split.images[chosen.ravel()], np.repeat(np.arange(len(CLASSES)), 8).astype(np.int32)


def _rgb(grey: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [n, h, w, 3]: nearest-neighbour resize of 28x28 grey images, with a colour tint so
    the channels differ (a swapped channel order must not pass)."""
    rows, columns = np.arange(height) * 28 // height, np.arange(width) * 28 // width
    resized = grey[:, rows][:, :, columns].astype(np.float32)
    return np.stack([resized, resized * 0.8, 255 - resized * 0.6], axis=-1).round().astype(np.uint8)


def _classify(vision, path: str, images: np.ndarray) -> np.ndarray:
    """MediaPipe's scores [n, classes] (by category index), checking its category names."""
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path), max_results=-1)
    scores = np.full((len(images), len(LABELS)), np.nan)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for row, image in enumerate(images):
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            (head,) = result.classifications
            assert sorted(c.index for c in head.categories) == list(range(len(LABELS)))
            for category in head.categories:
                assert category.category_name == LABELS[category.index]
                scores[row, category.index] = category.score
    return scores


def _trained_export(base_path: str, photos, tmp_path, to_model_input, image_range=None,
                    via_cli: bool = False) -> tuple[str, np.ndarray]:
    """Compiles a 3-class head over the base, trains it on the photos, exports it; returns the
    exported file and the uint8 test images (the photos at the base's size)."""
    result = compile_model(base_path, tensor_produced_by(base_path, "MEAN"), num_classes=len(LABELS),
                           labels=LABELS, learning_rate=0.01)
    trainable_path, checkpoint, output = tmp_path / "trainable.tflite", tmp_path / "me.ckpt", tmp_path / "personal.tflite"
    trainable_path.write_bytes(result.model_bytes)
    model = TransferModel.open(str(trainable_path))
    grey, labels = photos
    images = _rgb(grey, *model.image_shape[:2])
    model.add_samples(to_model_input(images), labels)
    model.imprint()   # nearest class means: distinct predictions even on these tiny bases
    model.fit(epochs=2, batch_size=8, progress=False)
    model.save_checkpoint(checkpoint)
    if via_cli:
        flags = [f"--model={trainable_path}", f"--checkpoint={checkpoint}", f"--output={output}"]
        process = run_cli("export", *flags, *([f"--image_range={image_range[0]:g},{image_range[1]:g}"]
                                              if image_range else []))
        assert process.returncode == 0, process.stderr
    else:
        inference_model.export_files(str(trainable_path), str(checkpoint), str(output), image_range)
    return str(output), images


def _check_scores(vision, path: str, model_inputs: np.ndarray, images: np.ndarray) -> None:
    ours = InferenceModel.open(path)
    assert ours.labels == list(LABELS)
    expected = np.concatenate([ours.predict(image[None]) for image in model_inputs])
    theirs = _classify(vision, path, images)
    np.testing.assert_allclose(theirs, expected, rtol=0, atol=SCORE_TOLERANCE)
    assert len(set(expected.argmax(1))) > 1, "the trained model predicts one class for every photo"


def test_a_uint8_base_classifies_in_mediapipe(vision, photos, tiny_classifier_path, tmp_path):
    path, images = _trained_export(tiny_classifier_path, photos, tmp_path, lambda x: x)
    _check_scores(vision, path, images, images)


def _with_tflite_metadata(model_bytes: bytes, mean: float, std: float) -> bytes:
    """A float base with standard TFLite Metadata as hosted classifiers carry it (input
    normalization, its own labels file), written with mediapipe's generated schema module."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    normalization = schema.NormalizationOptionsT()
    normalization.mean, normalization.std = [mean], [std]
    unit = schema.ProcessUnitT()
    unit.optionsType, unit.options = schema.ProcessUnitOptions.NormalizationOptions, normalization
    properties = schema.ImagePropertiesT()
    properties.colorSpace = schema.ColorSpaceType.RGB
    content = schema.ContentT()
    content.contentPropertiesType, content.contentProperties = schema.ContentProperties.ImageProperties, properties
    image = schema.TensorMetadataT()
    image.name, image.content, image.processUnits = "input", content, [unit]
    labels = schema.AssociatedFileT()
    labels.name, labels.type = "labels.txt", schema.AssociatedFileType.TENSOR_AXIS_LABELS
    scores = schema.TensorMetadataT()
    scores.name, scores.associatedFiles = "scores", [labels]
    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [scores]
    metadata = schema.ModelMetadataT()
    metadata.name, metadata.subgraphMetadata, metadata.minParserVersion = "hosted float base", [subgraph], "1.0.0"
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), b"M001")
    model = model_io.read_model_bytes(model_bytes)
    graph.set_metadata(model, tflite_metadata.METADATA_NAME, bytes(builder.Output()))
    return model_io.append_associated_files(model_io.write_model_bytes(model),
                                            {"labels.txt": b"base_a\nbase_b\nbase_c\nbase_d\n"})


def test_a_float_bases_own_normalization_is_carried_over(vision, photos, tmp_path):
    base = tmp_path / "float_base_with_metadata.tflite"
    base.write_bytes(_with_tflite_metadata(tiny_float_classifier(), mean=127.5, std=127.5))
    path, images = _trained_export(str(base), photos, tmp_path, lambda x: (x.astype(np.float32) - 127.5) / 127.5)
    written = tflite_metadata.read_image_input(
        graph.get_metadata(model_io.read_model(path), tflite_metadata.METADATA_NAME))
    assert (written.mean, written.std, written.value_range) == ((127.5,), (127.5,), (-1.0, 1.0))
    _check_scores(vision, path, (images.astype(np.float32) - 127.5) / 127.5, images)


def test_a_float_base_without_metadata_takes_image_range(vision, photos, tmp_path):
    base = tmp_path / "float_base.tflite"
    base.write_bytes(tiny_float_classifier())
    path, images = _trained_export(str(base), photos, tmp_path, lambda x: x.astype(np.float32) / 255,
                                   image_range=(0.0, 1.0), via_cli=True)
    _check_scores(vision, path, images.astype(np.float32) / 255, images)
