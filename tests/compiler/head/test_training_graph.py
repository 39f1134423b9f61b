"""The head's train step against TensorFlow eager + Keras (verify.py) over every loss and head
kind. Tolerance: relative weight difference (all weights as one vector) <= 1e-5. Each
optimizer's own cases live in test_optimizers.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers import check_train_matches_keras, compile_model
from tflite_transfer.compiler.head import heads, losses, optimizers, training_graph
from tflite_transfer.compiler.checks import verify
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError

TOLERANCE = 1e-5

CASES = [
    dict(optimizer="adam", learning_rate=0.01, label_smoothing=0.2),
    dict(optimizer="sgd", learning_rate=0.05, head="mlp:6,4"),
    dict(optimizer="adam", learning_rate=0.01, head="mlp:9", loss="mse"),
    # >= MIN_UNITS_FOR_BATCH_MATMUL units: the hidden layer's forward pass is an IF between
    # BATCH_MATMUL (batch > 1) and FULLY_CONNECTED (batch 1); both branches are checked below.
    dict(optimizer="momentum", learning_rate=0.05, momentum=0.9, head="mlp:40"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_train_steps_match_tensorflow_eager(tiny_classifier_path, tiny_pool_name, case):
    result = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, **case)
    check_train_matches_keras(result, case["learning_rate"], TOLERANCE)



def test_one_hot_soft_targets_train_like_keras_categorical_cross_entropy(tiny_classifier_path, tiny_pool_name):
    """--label_format=one_hot: train takes float rows (verify.py draws soft ones, Dirichlet) and
    steps as Keras' CategoricalCrossentropy (with label smoothing applied to the rows) does."""
    case = dict(num_classes=3, optimizer="adam", learning_rate=0.01, label_smoothing=0.2)
    result = compile_model(tiny_classifier_path, tiny_pool_name, interface={"label_format": "one_hot"}, **case)
    assert result.metadata.label.one_hot and not result.head.loss.takes_class_ids
    report = verify.verify_training(result.model_bytes, result.head, steps=15, batch_size=6, seed=3)
    assert report.max_relative_difference <= TOLERANCE, report.per_variable
    assert report.max_loss_difference <= 1e-5
    # Able to fail: the same model against a reference without the label smoothing.
    unsmoothed = compile_model(tiny_classifier_path, tiny_pool_name, interface={"label_format": "one_hot"},
                               **dict(case, label_smoothing=0.0))
    wrong = verify.verify_training(result.model_bytes, unsmoothed.head, steps=15, batch_size=6, seed=3)
    assert wrong.max_relative_difference > 100 * TOLERANCE

@pytest.mark.parametrize("batch_size", [1, 6])
def test_wide_layers_train_like_keras_at_batch_1_and_above(tiny_classifier_path, tiny_pool_name, batch_size):
    assert training_graph.MIN_UNITS_FOR_BATCH_MATMUL <= 40
    result = compile_model(tiny_classifier_path, tiny_pool_name, num_classes=3, optimizer="adam",
                           learning_rate=0.01, head="mlp:40")
    report = verify.verify_training(result.model_bytes, result.head, steps=8, batch_size=batch_size, seed=5)
    assert report.max_relative_difference <= TOLERANCE, report.per_variable


@pytest.mark.parametrize("batches", [(2, 4), (1, 1)])
def test_wide_layers_with_fixed_signature_batches(tiny_classifier_path, tiny_pool_name, batches):
    """--batch: no IF (train and train_images would share its branches at two batches); the
    forward op is chosen for train's batch and still trains like Keras."""
    from tflite_transfer.compiler.passes import batch

    result = compile_model(tiny_classifier_path, tiny_pool_name, verify_steps=4, num_classes=3, optimizer="adam",
                           learning_rate=0.01, head="mlp:40", batch_options=batch.BatchOptions(*batches))
    assert result.parity.batch_size == batches[1]
    assert result.parity.max_relative_difference <= TOLERANCE, result.parity.per_variable


def test_compile_refuses_a_model_that_fails_verification(tiny_classifier_path, tiny_pool_name):
    from tflite_transfer.compiler.errors import VerificationError

    with pytest.raises(VerificationError, match="differ from the TensorFlow reference"):
        from tflite_transfer.compiler.base import sources
        from tflite_transfer.compiler import pipeline

        base = sources.load_base(sources.BaseOptions(base=tiny_classifier_path, base_output=tiny_pool_name),
                               lambda m: None)
        pipeline.compile_from_base(base, pipeline.HeadOptions(num_classes=3),
                                   verify_steps=5, verify_tolerance=1e-12, progress=lambda m: None)


def keras_head_file(tmp_path, layers, name="head.keras") -> str:
    model = keras.Sequential([keras.Input((7,)), *layers])
    path = tmp_path / name
    model.save(path)
    return str(path)


def test_keras_head_keeps_its_weights_and_trains_like_keras(tmp_path, tiny_classifier_path, tiny_pool_name):
    keras.utils.set_random_seed(4)
    path = keras_head_file(tmp_path, [keras.layers.Dense(6, activation="tanh", name="hidden"),
                                      keras.layers.Dropout(0.1),
                                      keras.layers.Dense(3, activation="softmax", name="scores")])
    result = compile_model(tiny_classifier_path, tiny_pool_name, head=f"keras:{path}",
                           num_classes=3, optimizer="adam")
    original = keras.models.load_model(path)
    np.testing.assert_array_equal(result.head.initial_state["hidden_kernel"], original.layers[0].get_weights()[0].T)
    np.testing.assert_array_equal(result.head.initial_state["scores_bias"], original.layers[2].get_weights()[1])
    report = verify.verify_training(result.model_bytes, result.head, steps=10)
    assert report.max_relative_difference <= TOLERANCE


def test_keras_head_with_unsupported_layer(tmp_path):
    path = keras_head_file(tmp_path, [keras.layers.Dense(6), keras.layers.BatchNormalization(name="bn"),
                                      keras.layers.Dense(3)])
    with pytest.raises(UnsupportedModelError, match=r"layer 'bn' \(BatchNormalization\) is not supported"):
        heads.build_head(f"keras:{path}", 7, 3)


def test_keras_head_with_wrong_sizes(tmp_path):
    path = keras_head_file(tmp_path, [keras.layers.Dense(3)])
    with pytest.raises(InvalidInputError, match="the head takes 7 features but the base's bottleneck has 9"):
        heads.build_head(f"keras:{path}", 9, 3)
    with pytest.raises(InvalidInputError, match="3 outputs but --num_classes is 5"):
        heads.build_head(f"keras:{path}", 7, 5)


def test_conflicting_variable_names(tmp_path):
    path = keras_head_file(tmp_path, [keras.layers.Dense(4, activation="relu", name="a-b"),
                                      keras.layers.Dense(3, name="a_b")])
    head = heads.build_head(f"keras:{path}", 7, 3)
    with pytest.raises(InvalidInputError, match="conflicting variable names: 'a_b_kernel'"):
        training_graph.build_training_head(head, losses.build_loss("softmax_cross_entropy"),
                                           optimizers.build_optimizer("sgd", 0.1))


def test_base_variables_clashing_with_the_head_are_refused(tiny_fused):
    from tflite_transfer.compiler.passes import cut, fuse
    from tflite_transfer.compiler.flatbuffer import model_io

    head_model = model_io.read_model_bytes(tiny_fused.head.tflite)
    clashing_base = cut.PreparedBase(head_model, 0, 7, 1, "base.tflite")
    with pytest.raises(InvalidInputError, match="conflicting variable names: .*step"):
        fuse.fuse_base_and_head(clashing_base, head_model)


@pytest.mark.parametrize("flag,message", [
    ("softmax:3", "takes no argument"), ("mlp:", "expected hidden layer sizes"), ("mlp:abc", "expected hidden"),
    ("mlp:0", "expected hidden layer sizes"), ("conv", "unknown --head"),
    ("keras:/nonexistent/head.keras", "not found"),
])
def test_bad_head_flags(flag, message):
    with pytest.raises(InvalidInputError, match=message):
        heads.build_head(flag, 7, 3)


def test_bad_loss_flags():
    with pytest.raises(InvalidInputError, match="unknown --loss"):
        losses.build_loss("hinge")
    with pytest.raises(InvalidInputError, match="label_smoothing"):
        losses.build_loss("softmax_cross_entropy", label_smoothing=1.0)
    with pytest.raises(InvalidInputError, match="--label_smoothing applies to softmax_cross_entropy only, not --loss=mse"):
        losses.build_loss("mse", label_smoothing=0.1)


def test_verify_accepts_a_three_class_adam_head(small_mobilenet_path):
    """Regression: one near-zero bias gradient made a per-variable measure read 6e-4 for a
    correct model (Adam's step is ~sign(gradient) there); the default compile must pass."""
    result = compile_model(small_mobilenet_path, num_classes=3, optimizer="adam", verify_steps=10)
    assert result.parity.max_relative_difference <= TOLERANCE
