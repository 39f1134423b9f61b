"""pytest-benchmark suite: each signature of our fused model, the base alone and the floor, in
this process's ai_edge_litert (`pytest benchmarks/`; add `--benchmark-json=out.json` to keep
the figures). The peers and the memory figures are in `python -m benchmarks`, which runs them
in fresh processes and venvs. Only the signature runner call is timed; inputs are pre-built."""

from __future__ import annotations

import pytest

from benchmarks.common.peers.timing import make_input

SIGNATURES = [("load", 1), ("infer", 1), ("train", 1), ("train", 8), ("train", 32), ("train_images", 1),
              ("train_images", 8), ("save", None), ("restore", None), ("set_learning_rate", None)]


def _interpreter(path: str, threads: int, xnnpack: bool):
    from ai_edge_litert import interpreter as litert

    resolver = litert.OpResolverType.AUTO if xnnpack else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return litert.Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)


def _inputs(subjects, signature: str, batch: int | None, runner_of) -> dict:
    image = {"shape": [batch or 1, *subjects.image_shape], "range": [0, 255]}
    bottleneck = {"shape": [batch or 1, subjects.bottleneck_size], "range": [0, 6]}
    label = {"shape": [batch or 1], "fill": "labels", "classes": subjects.num_classes}
    specs = {"load": {"image": image}, "infer": {"image": image}, "train": {"bottleneck": bottleneck, "label": label},
             "train_images": {"image": image, "label": label},
             "set_learning_rate": {"learning_rate": {"shape": [1], "fill": "constant", "value": 0.001}}}
    if signature == "restore":
        return runner_of("save")()
    return {name: make_input(spec, seed) for seed, (name, spec) in enumerate(sorted(specs.get(signature, {}).items()))}


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "builtin"])
@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("signature,batch", SIGNATURES, ids=[f"{s}-b{b}" if b else s for s, b in SIGNATURES])
def test_fused_signature(benchmark, subjects, optimizer, threads, xnnpack, signature, batch):
    interpreter = _interpreter(subjects.fused_paths[optimizer], threads, xnnpack)
    runner = interpreter.get_signature_runner(signature)
    inputs = _inputs(subjects, signature, batch, interpreter.get_signature_runner)
    benchmark.extra_info.update(optimizer=optimizer, threads=threads, xnnpack=xnnpack, batch=batch)
    benchmark(runner, **inputs)


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "builtin"])
@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_base_alone(benchmark, subjects, threads, xnnpack):
    runner = _interpreter(subjects.base_path, threads, xnnpack).get_signature_runner("serving_default")
    image = make_input({"shape": [1, *subjects.image_shape], "range": [0, 255]}, 0)
    benchmark(runner, image=image)


def test_floor(benchmark, subjects):
    """The trivial one-ADD model: what any signature call costs at least."""
    runner = _interpreter(subjects.floor_path, 1, True).get_signature_runner("serving_default")
    benchmark(runner, x=make_input({"shape": [1], "fill": "constant", "value": 1.0}, 0))
