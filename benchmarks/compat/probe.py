"""Runs a compiled model's whole signature contract in one runtime; prints one JSON line per model.

    python probe.py --api litert|tflite_runtime|tf MODEL.tflite [MODEL.tflite ...]

Runs inside the compatibility venvs (benchmarks/compat/), so it imports only numpy, the runtime
under test and the project's numpy-only contract module (signature and tensor names; the parent
puts it on PYTHONPATH, see matrix.py). A stage that fails stops that model; its
result names the stage and the runtime's error line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tflite_transfer.runtime import contract as C  # noqa: E402

TRAIN_STEPS = 20


def load_runtime(api: str):
    """(Interpreter class, version string) of the runtime under test."""
    if api == "litert":
        from ai_edge_litert import interpreter as litert

        try:
            from importlib.metadata import version
            found = version("ai-edge-litert")
        except Exception:  # noqa: BLE001
            found = "?"
        return litert.Interpreter, found
    if api == "tflite_runtime":
        import tflite_runtime
        from tflite_runtime import interpreter as tflite

        return tflite.Interpreter, getattr(tflite_runtime, "__version__", "?")
    import tensorflow as tf

    return tf.lite.Interpreter, tf.__version__


def enter(stage: str) -> str:
    """Reports the stage on stderr first, so a runtime that crashes the process (a segfault
    leaves no exception) is still reported with the stage it died in."""
    print(f"STAGE {stage}", file=sys.stderr, flush=True)
    return stage


class StageError(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def error_line(error: BaseException) -> str:
    """The line of a runtime error that says what went wrong (TFLite errors span many lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "Didn't find op" in line or "not supported" in line or "failed" in line.lower():
            return line[:300]
    return (lines[0] if lines else type(error).__name__)[:300]


def images_for(runner, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-separable images of the model's input type: the class's colour channel is bright."""
    detail = runner.get_input_details()[C.IMAGE]
    shape = [int(d) for d in detail["shape_signature"][1:]]
    rng = np.random.default_rng(seed)
    labels = np.arange(batch, dtype=np.int32) % 3
    pixels = rng.integers(0, 90, (batch, *shape)).astype(np.int32)
    for index, label in enumerate(labels):
        pixels[index, ..., label % shape[-1]] += 150
    return pixels.astype(detail["dtype"]), labels


def targets_for(labels: np.ndarray, runner, key: str) -> np.ndarray:
    """int32 class ids, or float32 one-hot targets for an MSE head."""
    detail = runner.get_input_details()[C.LABEL]
    if detail["dtype"] == np.int32:
        return labels
    outputs = int(detail["shape_signature"][-1])
    return np.eye(outputs, dtype=np.float32)[labels % outputs]


def probe(interpreter_class, path: str) -> dict:
    stage = enter("open")
    try:
        interpreter = interpreter_class(model_path=path)
        stage = enter("signatures")
        found = sorted(interpreter.get_signature_list())
        if found != sorted(C.SIGNATURES):
            raise StageError(stage, f"signatures {found}")
        run = {key: interpreter.get_signature_runner(key) for key in C.SIGNATURES}

        stage = enter("initialize")
        if int(run[C.INITIALIZE]()[C.STEP][0]) != 0:
            raise StageError(stage, "initialize did not return step 0")
        initial_state = {k: v.copy() for k, v in run[C.SAVE]().items()}

        stage = enter("load")
        images, labels = images_for(run[C.LOAD], batch=6, seed=0)
        bottleneck = run[C.LOAD](**{C.IMAGE: images})[C.BOTTLENECK]
        if bottleneck.ndim != 2 or bottleneck.shape[0] != 6 or not np.isfinite(bottleneck).all():
            raise StageError(stage, f"bottleneck shape {bottleneck.shape} or non-finite values")

        stage = enter("infer")
        outputs = run[C.INFER](**{C.IMAGE: images})
        prediction = next(iter(outputs.values()))
        if prediction.shape[0] != 6 or not np.isfinite(prediction).all():
            raise StageError(stage, f"infer output shape {prediction.shape} or non-finite values")
        if C.PROBABILITIES in outputs and not np.allclose(prediction.sum(axis=1), 1.0, atol=1e-4):
            raise StageError(stage, "probabilities do not sum to 1")
        if not np.array_equal(run[C.LOAD](**{C.IMAGE: images})[C.BOTTLENECK], bottleneck):
            raise StageError("load", "load is not deterministic")

        stage = enter("train")
        targets = targets_for(labels, run[C.TRAIN], "train")
        losses = [float(run[C.TRAIN](**{C.BOTTLENECK: bottleneck, C.LABEL: targets})[C.LOSS][0])
                  for _ in range(TRAIN_STEPS)]
        if not all(np.isfinite(losses)) or not np.mean(losses[-3:]) < np.mean(losses[:3]):
            raise StageError(stage, f"loss did not fall: {losses[0]:.4g} -> {losses[-1]:.4g}")

        stage = enter("train_images")
        loss_images = run[C.TRAIN_IMAGES](**{C.IMAGE: images, C.LABEL: targets})[C.LOSS]
        if loss_images.shape != (1,) or not np.isfinite(loss_images).all():
            raise StageError(stage, f"loss shape {loss_images.shape}")

        stage = enter("save/restore")
        saved = {k: v.copy() for k, v in run[C.SAVE]().items()}
        next_loss = run[C.TRAIN](**{C.BOTTLENECK: bottleneck, C.LABEL: targets})[C.LOSS].copy()
        run[C.TRAIN](**{C.BOTTLENECK: bottleneck, C.LABEL: targets})
        restored_step = run[C.RESTORE](**saved)[C.STEP]
        again = run[C.SAVE]()
        if sorted(again) != sorted(saved) or any(not np.array_equal(again[k], saved[k]) for k in saved):
            raise StageError(stage, "save after restore differs from the saved state")
        if int(restored_step[0]) != int(np.ravel(saved[C.STEP])[0]):
            raise StageError(stage, f"restore returned step {restored_step}")
        replay = run[C.TRAIN](**{C.BOTTLENECK: bottleneck, C.LABEL: targets})[C.LOSS]
        if not np.array_equal(replay, next_loss):
            raise StageError(stage, "a train step after restore differs from the original step")

        stage = enter("set_learning_rate")
        rate = run[C.SET_LEARNING_RATE](**{C.LEARNING_RATE: np.array([0.25], np.float32)})[C.LEARNING_RATE]
        if float(np.ravel(rate)[0]) != 0.25 or float(np.ravel(run[C.SAVE]()[C.LEARNING_RATE])[0]) != 0.25:
            raise StageError(stage, f"learning rate reads back {rate}")

        stage = enter("initialize")
        if int(run[C.INITIALIZE]()[C.STEP][0]) != 0:
            raise StageError(stage, "initialize did not return step 0")
        reset = run[C.SAVE]()
        if any(not np.array_equal(reset[k], initial_state[k]) for k in initial_state):
            raise StageError(stage, "initialize did not restore the compiled initial state")
    except StageError as error:
        return {"ok": False, "stage": error.stage, "error": str(error)}
    except Exception as error:  # noqa: BLE001 - any runtime failure is a result here
        return {"ok": False, "stage": stage, "error": error_line(error),
                "traceback": traceback.format_exc(limit=2)[-800:]}
    return {"ok": True, "stage": "done", "error": "", "first_loss": losses[0], "last_loss": losses[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", choices=("litert", "tflite_runtime", "tf"), required=True)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    try:
        interpreter_class, version = load_runtime(args.api)
    except Exception as error:  # noqa: BLE001
        for path in args.models:
            print(json.dumps({"model": path, "ok": False, "stage": "import", "error": error_line(error)}))
        return
    for path in args.models:
        result = probe(interpreter_class, path)
        print(json.dumps({"model": path, "runtime_version": version, "numpy": np.__version__,
                          "python": sys.version.split()[0], **result}), flush=True)


if __name__ == "__main__":
    main()
