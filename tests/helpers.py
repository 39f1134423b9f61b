"""Plain helpers the tests share (the fixtures that use them live in tests/conftest.py):
compiling a model from a base file, an interpreter over model bytes, and synthetic images.
Imported as `tests.helpers` (several conftest.py files exist, so `from conftest import` is
ambiguous)."""

from __future__ import annotations

import collections

import numpy as np


def _first_op_tensor(path: str, op_name: str, side: str) -> str:
    from tflite_transfer.compiler.flatbuffer import model_io

    model = model_io.read_model(path)
    subgraph = model.subgraphs[0]
    for op in subgraph.operators:
        if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == op_name:
            return model_io.tensor_name(subgraph.tensors[getattr(op, side)[0]])
    raise LookupError(op_name)


def tensor_produced_by(path: str, op_name: str) -> str:
    """The name of the first tensor an op of that type writes (names depend on Keras' global
    layer counter, so tests look them up instead of hard-coding them)."""
    return _first_op_tensor(path, op_name, "outputs")


def tensor_consumed_by(path: str, op_name: str) -> str:
    """The name of the first input of the first op of that type (e.g. the feature map a
    global pooling MEAN reads: a spatial cut)."""
    return _first_op_tensor(path, op_name, "inputs")


def compile_model(base_path: str, base_output: str | None = None, verify_steps: int = 0,
                  batch_options=None, interface=None, **head):
    """Compiles with the structural checks after every pass (tests/pass_checks.py).
    `interface`: a dict of compiler.options.InterfaceOptions fields (names, input_range, ...)."""
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler.passes import batch
    from tflite_transfer.compiler import pipeline

    from tests.pass_checks import PassChecks

    interface_options = pipeline.InterfaceOptions(**(interface or {}))
    plan = pipeline.make_plan(pipeline.HeadOptions(**head), interface_options=interface_options)
    base = sources.load_base(sources.BaseOptions(base=base_path, base_output=base_output), lambda m: None,
                             plan.interface)
    return pipeline.compile_from_base(base, pipeline.HeadOptions(**head), verify_steps=verify_steps,
                                      batch_options=batch_options or batch.BatchOptions(),
                                      interface_options=interface_options, progress=lambda m: None,
                                      after_pass=PassChecks(base))


def check_train_matches_keras(result, learning_rate: float, tolerance: float) -> None:
    """A compiled model's `train` matches verify.py's Keras reference over 15 steps, and the
    check is able to fail: the same steps against a reference with another optimizer differ."""
    import dataclasses

    from tflite_transfer.compiler.checks import verify
    from tflite_transfer.compiler.head import optimizers

    report = verify.verify_training(result.model_bytes, result.head, steps=15, batch_size=6, seed=3)
    assert report.max_relative_difference <= tolerance, report.per_variable
    assert report.max_loss_difference <= 1e-5
    other = "momentum" if result.head.optimizer.name == "sgd" else "sgd"
    wrong = dataclasses.replace(result.head, optimizer=optimizers.build_optimizer(other, learning_rate))
    mismatch = verify.verify_training(result.model_bytes, wrong, steps=15, batch_size=6, seed=3)
    assert mismatch.max_relative_difference > 100 * tolerance


def interpreter(model_bytes: bytes, kind: str = "litert", xnnpack: bool = True):
    """A fresh interpreter of either Python API, with or without the default XNNPACK delegate."""
    if kind == "litert":
        from ai_edge_litert import interpreter as litert

        resolver = (litert.OpResolverType.AUTO if xnnpack
                    else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        return litert.Interpreter(model_content=model_bytes, experimental_op_resolver_type=resolver)
    import tensorflow as tf

    resolver = (tf.lite.experimental.OpResolverType.AUTO if xnnpack
                else tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return tf.lite.Interpreter(model_content=model_bytes, experimental_op_resolver_type=resolver)


def random_images(shape, dtype, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
    if np.dtype(dtype) == np.int8:
        return rng.integers(-128, 128, (batch, *shape), dtype=np.int8)
    return (rng.random((batch, *shape)) * 255.0).astype(np.float32)


def colour_images(count_per_class: int, seed: int, shape=(16, 12, 3), classes: int = 3):
    """uint8 images whose dominant colour channel is the class: a separable task."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), count_per_class).astype(np.int32)
    images = rng.integers(0, 90, (len(labels), *shape)).astype(np.int32)
    for index, label in enumerate(labels):
        images[index, ..., label % shape[-1]] += 150
    order = rng.permutation(len(labels))
    return images[order].astype(np.uint8), labels[order]


def outcomes_of(read, cases) -> collections.Counter:
    """Runs read(label, data) on every (label, data) case; counts the outcomes (the project's
    error class names, or "read") and fails the test on any raw exception or multi-line error."""
    from tflite_transfer.runtime.errors import TransferError
    outcomes, raw = collections.Counter(), []
    for label, data in cases:
        try:
            read(label, data)
            outcomes["read"] += 1
        except TransferError as error:
            outcomes[type(error).__name__] += 1
            assert "\n" not in str(error), f"{label}: a multi-line error: {error!r}"
        except Exception as error:  # noqa: BLE001 (the bug this test looks for)
            raw.append(f"{label}: {type(error).__name__}: {error}")
    assert not raw, f"{len(raw)} raw exceptions (outcomes {dict(outcomes)}):\n" + "\n".join(raw[:20])
    return outcomes
