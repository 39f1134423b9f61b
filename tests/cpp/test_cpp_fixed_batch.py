"""Fixed batches in the C++ runtime (runtime/SPEC.md#fixed-batches): load/infer run any number of images in
chunks of image_batch (the last padded, padded outputs dropped), train/train_images take
exactly their batch, and the demo's epochs draw fixed batches from one stream of per-epoch
orders. References: the Python runtime on the dynamic-batch model, one image at a time, and
the `train` signature driven directly in LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import colour_images
from tests.fixtures.cpp_runtime import assert_one_error_line, epoch_losses, run_demo, rewrite_model

IMAGE_BATCH, TRAIN_BATCH = 2, 4


@pytest.fixture(scope="session")
def fixed_model_path(tiny_classifier_path, tiny_pool_name, tiny_fused, tmp_path_factory) -> str:
    """The tiny model with a fixed image batch of 2 and train batch of 4: from the compiler's
    --batch when it has one, else by fixing the signature inputs' shapes here."""
    try:
        from tflite_transfer.compiler.passes import batch
    except ImportError:
        model_bytes = rewrite_model(tiny_fused.model_bytes, static_batches=True,
                                    image_batch=IMAGE_BATCH, train_batch=TRAIN_BATCH)
    else:
        from tests.helpers import compile_model

        compiled = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, learning_rate=0.1,
                                 batch_options=batch.BatchOptions(IMAGE_BATCH, TRAIN_BATCH))
        model_bytes = rewrite_model(compiled.model_bytes)  # the same record, freshly stamped
    path = tmp_path_factory.mktemp("models_fixed") / "tiny_fixed.tflite"
    path.write_bytes(model_bytes)
    return str(path)


def test_load_and_infer_run_any_count_in_padded_chunks(cpp_demo, fixed_model_path, tiny_model_path, tmp_path):
    from tflite_transfer.runtime import TransferModel

    images, labels = colour_images(2, seed=3)
    images = images[:5]  # 5 images: chunks of 2, 2 and 1 + one padding copy
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", labels[:5])
    result = run_demo(cpp_demo, "--model", fixed_model_path, "--images", tmp_path / "images.npy", "--epochs", 0,
                      "--save_bottlenecks", tmp_path / "bottlenecks.npy")
    assert "fixed batches: images 2, train 4" in result.stdout
    bottlenecks = np.load(tmp_path / "bottlenecks.npy")
    reference = TransferModel.open(tiny_model_path)
    one_by_one = np.concatenate([reference.load(images[i:i + 1]) for i in range(5)])
    assert bottlenecks.shape == (5, 7)
    # int8 kernels of TFLite 2.14 and LiteRT 2.x round a few values one step apart (scale ~1e-3).
    np.testing.assert_allclose(bottlenecks, one_by_one, rtol=0, atol=1.5e-3)
    # The padding is a copy of a real image: the C++ result does not depend on the chunking.
    np.save(tmp_path / "last.npy", images[4:5])
    run_demo(cpp_demo, "--model", fixed_model_path, "--images", tmp_path / "last.npy", "--epochs", 0,
             "--save_bottlenecks", tmp_path / "last_bottleneck.npy")
    assert np.load(tmp_path / "last_bottleneck.npy").tobytes() == bottlenecks[4:5].tobytes()
    accuracy = run_demo(cpp_demo, "--model", fixed_model_path, "--images", tmp_path / "images.npy",
                        "--labels", tmp_path / "labels.npy", "--epochs", 0).stdout
    assert "accuracy" in accuracy and "(" in accuracy and "/5)" in accuracy  # infer over 5 images


def test_training_draws_fixed_batches_from_the_epoch_stream(cpp_demo, fixed_model_path, tmp_path):
    from ai_edge_litert import interpreter as litert

    rng = np.random.default_rng(0)
    bottlenecks = rng.normal(size=(6, 7)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2], np.int32)
    np.save(tmp_path / "b.npy", bottlenecks)
    np.save(tmp_path / "l.npy", labels)
    result = run_demo(cpp_demo, "--model", fixed_model_path, "--bottlenecks", tmp_path / "b.npy",
                      "--labels", tmp_path / "l.npy", "--epochs", 2, "--learning_rate", 0.5, "--no_imprint")
    # Stream 0..5 0..5 cut in fours: [0 1 2 3] ends in epoch 1, [4 5 0 1] and [2 3 4 5] in epoch 2.
    reference = litert.Interpreter(model_path=fixed_model_path)
    reference.get_signature_runner("set_learning_rate")(learning_rate=np.array([0.5], np.float32))
    train = reference.get_signature_runner("train")
    losses = [float(train(bottleneck=bottlenecks[rows], label=labels[rows])["loss"][0])
              for rows in ([0, 1, 2, 3], [4, 5, 0, 1], [2, 3, 4, 5])]
    np.testing.assert_allclose(epoch_losses(result.stdout), [losses[0], np.mean(losses[1:])], rtol=1e-5)

    # Fewer samples than the batch: batches span epochs, an epoch may end none.
    np.save(tmp_path / "b3.npy", bottlenecks[:3])
    np.save(tmp_path / "l3.npy", labels[:3])
    result = run_demo(cpp_demo, "--model", fixed_model_path, "--bottlenecks", tmp_path / "b3.npy",
                      "--labels", tmp_path / "l3.npy", "--epochs", 3)
    assert "epoch 1/3 loss n/a (no batch ended in this epoch: fixed batch 4 > 3 samples)" in result.stdout
    assert len(epoch_losses(result.stdout)) == 2

    assert_one_error_line_usage = run_demo(cpp_demo, "--model", fixed_model_path, "--bottlenecks", tmp_path / "b.npy",
                                           "--labels", tmp_path / "l.npy", "--batch_size", 3, expect_ok=False)
    assert assert_one_error_line_usage.returncode == 2
    assert "fixed batch of 4; drop --batch_size" in assert_one_error_line_usage.stderr


def test_train_images_streams_the_image_batch(cpp_demo, fixed_model_path, tmp_path):
    images, labels = colour_images(1, seed=4)  # 3 images, image batch 2
    np.save(tmp_path / "i.npy", images)
    np.save(tmp_path / "l.npy", labels)
    result = run_demo(cpp_demo, "--model", fixed_model_path, "--images", tmp_path / "i.npy", "--labels",
                      tmp_path / "l.npy", "--train_on", "images", "--epochs", 2)
    assert len(epoch_losses(result.stdout)) == 2  # 6 stream positions = 3 batches of 2


def test_a_nan_loss_stops_training_with_one_line(cpp_demo, tiny_v2_model_path, tmp_path):
    np.save(tmp_path / "b.npy", np.full((4, 7), 3e38, np.float32))
    np.save(tmp_path / "l.npy", np.array([0, 1, 2, 0]))
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--bottlenecks", tmp_path / "b.npy",
                      "--labels", tmp_path / "l.npy", "--epochs", 3, "--learning_rate", 1e6, "--no_imprint",
                      expect_ok=False)
    assert_one_error_line(result, "training diverged", "lower the learning rate")
