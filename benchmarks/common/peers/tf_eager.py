"""The head trained by TensorFlow itself (this project's TF 2.21, Keras 3): eager and tf.function.

    python tf_eager.py PLAN.json

Same head as ours: keras Dense(features -> classes), sparse softmax cross-entropy on int32
labels, keras SGD or Adam at the same learning rate. One step = GradientTape forward/backward +
`optimizer.apply_gradients`, run eagerly ("eager") and wrapped in tf.function ("tf.function",
traced once per batch size during warm-up). Save/restore in memory = every model and
optimizer variable to numpy / `assign` from numpy (what ours returns and takes).
Plan: {"mode", "features", "classes", "optimizer", "learning_rate", "batches", "threads", "runs"};
prints {"runtime", "results", "peak_rss_mib"}.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import emit, error_text, make_input, peak_rss_mib, summary, time_calls  # noqa: E402


def main() -> None:
    plan = json.load(open(sys.argv[1]))
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(plan["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((plan["features"],)), keras.layers.Dense(plan["classes"])])
    optimizer = (keras.optimizers.SGD(plan["learning_rate"]) if plan["optimizer"] == "sgd"
                 else keras.optimizers.Adam(plan["learning_rate"]))
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(bottleneck, label):
        with tf.GradientTape() as tape:
            loss = loss_fn(label, model(bottleneck, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    compiled_step = tf.function(step)
    state = list(model.variables) + list(optimizer.variables)
    calls = {}
    for batch in plan["batches"]:
        bottleneck = tf.constant(make_input({"shape": [batch, plan["features"]], "range": [0, 6]}, seed=0))
        label = tf.constant(make_input({"shape": [batch], "fill": "labels", "classes": plan["classes"]}, seed=1))
        calls[("eager", "train", batch)] = lambda b=bottleneck, l=label: step(b, l)
        calls[("tf.function", "train", batch)] = lambda b=bottleneck, l=label: compiled_step(b, l)
    saved = [variable.numpy() for variable in state]
    calls[("eager", "save", None)] = lambda: [variable.numpy() for variable in state]
    calls[("eager", "restore", None)] = lambda: [v.assign(value) for v, value in zip(state, saved)]

    results, runs = [], plan.get("runs", {})
    for (variant, signature, batch), call in calls.items():
        try:
            if plan["mode"] == "memory":
                call()
                results.append({"variant": variant, "signature": signature, "batch": batch, "runs": 1})
                continue
            times = time_calls([call], runs.get("min_runs", 10), runs.get("max_runs", 1000),
                               runs.get("budget_s", 1.0), warmup=max(3, runs.get("warmup", 2)))[0]
            results.append({"variant": variant, "signature": signature, "batch": batch, **summary(times)})
        except Exception as error:  # noqa: BLE001 - reported per call
            results.append({"variant": variant, "signature": signature, "batch": batch, "error": error_text(error)})
    emit({"runtime": f"tensorflow {tf.__version__} / keras {keras.__version__}", "results": results,
          "peak_rss_mib": peak_rss_mib()})


if __name__ == "__main__":
    main()
