"""Bases with a fixed batch of 1 (tests/fixtures/fixed_batch_bases.py): made batch-agnostic where that
is exact, else the image signatures are fixed at batch 1; never a model that advertises a
batch its base cannot run. Every compiled model is run signature by signature at batch 1 and 3
(or at its fixed batch) from its final bytes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import compile_model, interpreter, random_images
from tests.fixtures.fixed_batch_bases import fixed_batch_base
from tflite_transfer.compiler.passes import batch
from tflite_transfer.compiler.cli import summary
from tflite_transfer.compiler.errors import InvalidInputError

AGNOSTIC = ("reshape", "tf1", "squeeze", "slice", "float", "se")     # rewritten, any batch
AT_BATCH_1 = ("broadcast", "mixing")                          # left as given, images one at a time


@pytest.fixture(scope="session")
def base_files(tmp_path_factory):
    """layout -> (path, bottleneck name), built on first use."""
    folder, built = tmp_path_factory.mktemp("fixed_batch_bases"), {}

    def get(layout: str):
        if layout not in built:
            data, features = fixed_batch_base(layout)
            path = folder / f"{layout}.tflite"
            path.write_bytes(data)
            built[layout] = (str(path), features)
        return built[layout]
    return get


@pytest.fixture(scope="session")
def compiled(base_files):
    """(layout, image batch, train batch) -> CompileResult, compiled on first use."""
    results = {}

    def get(layout: str, image_batch=None, train_batch=None):
        key = (layout, image_batch, train_batch)
        if key not in results:
            path, features = base_files(layout)
            results[key] = compile_model(path, features, num_classes=3, learning_rate=0.1,
                                         batch_options=batch.BatchOptions(image_batch, train_batch))
        return results[key]
    return get


def image_input(runner):
    details = runner.get_signature_runner("load").get_input_details()["image"]
    return tuple(int(d) for d in details["shape_signature"]), details["dtype"]


def run_every_signature(model_bytes: bytes, image_batch: int, train_batch: int, xnnpack: bool = True):
    """Runs every signature of the final bytes once; returns the outputs."""
    runner = interpreter(model_bytes, "litert", xnnpack)
    shape, dtype = image_input(runner)
    images = random_images(shape[1:], dtype, image_batch, seed=4)
    labels = np.arange(image_batch, dtype=np.int32) % 3
    rng = np.random.default_rng(5)
    signature = runner.get_signature_runner
    out = {"initialize": signature("initialize")(), "load": signature("load")(image=images),
           "infer": signature("infer")(image=images),
           "train": signature("train")(bottleneck=rng.random((train_batch, 8), dtype=np.float32),
                                       label=np.arange(train_batch, dtype=np.int32) % 3),
           "train_images": signature("train_images")(image=images, label=labels)}
    out["save"] = signature("save")()
    out["restore"] = signature("restore")(**out["save"])
    out["set_learning_rate"] = signature("set_learning_rate")(learning_rate=np.array([0.01], np.float32))
    assert out["load"]["bottleneck"].shape == (image_batch, 8)
    assert out["infer"]["probabilities"].shape == (image_batch, 3)
    assert all(np.isfinite(v).all() for outputs in out.values() for v in outputs.values())
    return out


def load_and_infer(model_bytes: bytes, images: np.ndarray, xnnpack: bool):
    runner = interpreter(model_bytes, "litert", xnnpack)
    return (runner.get_signature_runner("load")(image=images)["bottleneck"],
            runner.get_signature_runner("infer")(image=images)["probabilities"])


def base_features(path: str, images: np.ndarray, xnnpack: bool) -> tuple[np.ndarray, float, int]:
    """The user's base, as given, one image at a time (it runs at batch 1 only): the features
    output as stored (uint8, or float32), with its scale and zero point (0.0, 0 for float)."""
    from ai_edge_litert import interpreter as litert

    resolver = (litert.OpResolverType.AUTO if xnnpack
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    base = litert.Interpreter(model_path=path, experimental_op_resolver_type=resolver)
    base.allocate_tensors()
    image = base.get_input_details()[0]
    features = next(d for d in base.get_output_details() if tuple(d["shape"]) == (1, 8))
    rows = []
    for single in images:
        base.set_tensor(image["index"], single[None])
        base.invoke()
        rows.append(base.get_tensor(features["index"]).copy())
    scale, zero_point = features["quantization"]
    return np.concatenate(rows), float(scale), int(zero_point)


@pytest.mark.parametrize("layout", ["reshape", "tf1", "slice", "float", "se", "broadcast"])
def test_the_bases_reproduce_the_published_failure(base_files, layout):
    """As published bases do, these fail at batch 2 (builtin kernels)."""
    from ai_edge_litert import interpreter as litert

    path, _ = base_files(layout)
    base = litert.Interpreter(model_path=path,
                              experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    image = base.get_input_details()[0]
    assert list(image["shape_signature"]) == [1, 16, 12, 3]
    base.resize_tensor_input(image["index"], [2, 16, 12, 3])
    expected = {"reshape": "num_input_elements != num_output_elements", "tf1": "num_input_elements",
                "float": "num_input_elements", "slice": None, "se": "MUL", "broadcast": "BROADCAST_TO"}[layout]
    if expected is None:  # the batch slice [0:1] silently drops the second image
        base.allocate_tensors()
        base.set_tensor(image["index"], np.zeros((2, 16, 12, 3), image["dtype"]))
        base.invoke()
        assert (1, 8) in {tuple(d["shape"]) for d in base.get_output_details()}  # features of 1 image
        return
    with pytest.raises(RuntimeError, match=expected):
        base.allocate_tensors()
        base.set_tensor(image["index"], np.zeros((2, 16, 12, 3), image["dtype"]))
        base.invoke()


def test_without_the_pass_the_final_validation_refuses_the_model(base_files, monkeypatch):
    """A fixed-batch-of-1 base advertised at any batch (runtime/SPEC.md#fixed-batches), reproduced by switching
    the pass off: the model would
    advertise any batch and `load` would fail at batch 2; the compiler's run of every signature
    at batch 3 on the final bytes refuses it instead of writing it."""
    from tflite_transfer.compiler.errors import VerificationError

    monkeypatch.setattr(batch, "static_batches", lambda model, _b, _k, options, _s:
                        batch.fix_signature_batches(model, options.image_batch, options.train_batch))
    path, features = base_files("reshape")
    with pytest.raises(VerificationError, match="'load' fails at batch 3 in ai_edge_litert: .*reshape"):
        compile_model(path, features, num_classes=3)


@pytest.mark.parametrize("layout", AGNOSTIC)
def test_rewritten_bases_run_any_batch_bit_identical_to_single_images(compiled, base_files, layout):
    result = compiled(layout)
    assert result.batch.image_batch is None and result.metadata.image_batch is None
    assert result.batch.note.startswith("fixed-batch base made batch-agnostic")
    assert "bit for bit" in result.batch.note and "\n" not in result.batch.note
    assert result.signatures["load"][0][0].shape[0] == -1
    path, _ = base_files(layout)
    _, dtype = image_input(interpreter(result.model_bytes))
    images = random_images((16, 12, 3), dtype, 3, seed=9)
    for xnnpack in (True, False):
        run_every_signature(result.model_bytes, 1, 1, xnnpack)
        run_every_signature(result.model_bytes, 3, 3, xnnpack)
        together = load_and_infer(result.model_bytes, images, xnnpack)
        singles = [load_and_infer(result.model_bytes, images[i:i + 1], xnnpack) for i in range(3)]
        # The base part is exact across batch sizes; the float head may round differently per
        # batch size (kernels pick vector or scalar loops by size), within float32 precision.
        np.testing.assert_array_equal(together[0], np.concatenate([s[0] for s in singles]))
        np.testing.assert_allclose(together[1], np.concatenate([s[1] for s in singles]), rtol=1e-6, atol=1e-7)
        # The rewritten base computes what the user's base computes (same interpreter options),
        # compared as stored: our adapter's DEQUANTIZE inverted to the uint8 levels.
        expected, scale, zero_point = base_features(path, images, xnnpack)
        found = np.round(together[0] / scale) + zero_point if scale else together[0]
        np.testing.assert_array_equal(found, expected.astype(found.dtype))


def test_rewrites_are_named(compiled):
    assert "RESHAPE" in compiled("reshape").batch.note and "-> [-1, 8]" in compiled("reshape").batch.note
    assert "RESHAPE" in compiled("tf1").batch.note
    assert "RESHAPE" not in compiled("squeeze").batch.note            # SQUEEZE [1, 2] needs no rewrite
    assert "viewed as [-1, 1, 1, 8]" in compiled("se").batch.note
    assert all(compiled(layout).batch.base_rewritten for layout in ("reshape", "se"))
    assert "identical to the original (before the batch rewrite above)" in summary.format_summary(compiled("tf1"), "m")
    assert "STRIDED_SLICE" in compiled("slice").batch.note and "batch [0:1] -> [:]" in compiled("slice").batch.note


@pytest.mark.parametrize("layout", AT_BATCH_1)
def test_bases_that_cannot_be_rewritten_fix_the_image_batch_at_1(compiled, layout):
    result = compiled(layout)
    assert result.batch.image_batch == 1 and result.metadata.image_batch == 1
    assert result.batch.train_batch is None                           # train stays any batch
    reason = {"broadcast": "BROADCAST_TO", "mixing": "differs from 3 single calls"}[layout]
    assert "runs at batch 1 only" in result.batch.note and reason in result.batch.note
    for key in ("load", "infer", "train_images"):
        assert result.signatures[key][0][0].shape[0] == 1, key          # never advertises more
    assert result.signatures["train"][0][0].shape[0] == -1
    for xnnpack in (True, False):
        run_every_signature(result.model_bytes, 1, 3, xnnpack)
    text = summary.format_summary(result, "model.tflite")
    assert "batch: image signatures batch fixed 1, train batch any; the base runs at batch 1 only" in text


def test_a_fixed_image_batch_above_1_on_such_a_base_is_one_clear_error(base_files):
    path, features = base_files("broadcast")
    with pytest.raises(InvalidInputError, match=r"--batch=4,8: .* runs at batch 1 only .*; use --batch=1,8$"):
        compile_model(path, features, num_classes=3, batch_options=batch.BatchOptions(4, 8))


def test_fixed_batches_on_fixed_batch_bases(compiled, base_files):
    """--batch=1,T leaves the base as given (it runs at 1); --batch=2,4 rewrites it and fixes 2."""
    as_given = compiled("broadcast", 1, 4)
    assert (as_given.batch.image_batch, as_given.batch.train_batch, as_given.batch.note) == (1, 4, "")
    run_every_signature(as_given.model_bytes, 1, 4)
    fixed = compiled("reshape", 2, 4)
    assert fixed.signatures["load"][0][0].shape[0] == 2 and "batch-agnostic" in fixed.batch.note
    outputs = run_every_signature(fixed.model_bytes, 2, 4)
    images = random_images((16, 12, 3), np.uint8, 2, seed=4)
    dynamic = compiled("reshape")
    for xnnpack in (True, False):
        np.testing.assert_array_equal(load_and_infer(fixed.model_bytes, images, xnnpack)[0],
                                      load_and_infer(dynamic.model_bytes, images, xnnpack)[0])
    assert outputs["load"]["bottleneck"].shape == (2, 8)


def test_a_dynamic_base_is_left_as_given(tiny_fused):
    assert tiny_fused.batch.note == "" and tiny_fused.batch.image_batch is None
