"""The benchmarks, one command each (every group's own --help says what it measures):

    python -m benchmarks.host                 per-signature latency, memory, sizes vs the peers
    python -m benchmarks.host.fusion_figures  the shared base: file size, infer latency, peak RSS
    python -m benchmarks.speed                training step vs ONNX Runtime across head sizes
    python -m benchmarks.accuracy             few-shot accuracy on real images (Fashion-MNIST)
    python -m benchmarks.compat               the contract on every stock runtime since TF 2.12
    python -m benchmarks.android              on a device over adb (a phone or the emulated arm64)
    python -m benchmarks.web                  the browser runtime (LiteRT.js, wasm)
    python -m benchmarks.federated            federated personalization on Flower
    python -m benchmarks.fuzz                 corrupt checkpoints and models (long campaign)
    python -m benchmarks.runtime              TransferModel overheads: fit vs raw train, digest at open
    python -m benchmarks.export               exported vs trainable infer, per kernel set (XNNPACK, builtin)

Shared code lives in benchmarks/common/ (report writer, venvs, child processes, the peers'
child scripts); reports go to benchmarks/results/.
"""

import pathlib

if __name__ == "__main__":
    present = {path.name for path in pathlib.Path(__file__).parent.iterdir() if (path / "__main__.py").exists()}
    for line in __doc__.splitlines():
        words = line.split()
        if len(words) > 2 and words[:2] == ["python", "-m"] and words[2].split(".")[1] not in present:
            continue   # a group this checkout does not have
        print(line)
