"""Runs `train` of one model in a loop for a while (numpy + LiteRT only): the process the op
profiler samples. Prints {"steps", "median_us"}.

    python train_loop.py MODEL INPUTS_DIR BATCH SECONDS
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from protocol import load_inputs

if __name__ == "__main__":
    from ai_edge_litert.interpreter import Interpreter

    model, inputs, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    train = Interpreter(model_path=model, num_threads=1).get_signature_runner("train")
    bottleneck, label = load_inputs(inputs, batch)
    label = label.astype(np.int32)
    for _ in range(5):
        train(bottleneck=bottleneck, label=label)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        before = time.perf_counter()
        train(bottleneck=bottleneck, label=label)
        times.append(time.perf_counter() - before)
    print(json.dumps({"steps": len(times), "median_us": float(np.median(times)) * 1e6}))
