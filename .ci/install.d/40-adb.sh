#!/usr/bin/env bash
# The real-adb tests (tests/benchmarks/test_android_adbd.py): the adb client and server, iproute2
# for the network namespace adbd is served in, debootstrap for the device root (Debian trixie +
# adbd, ~1 min, cached in ~/.cache/tflite_transfer_adbd_root_amd64) and for the C++ testing
# root the bench program is built in (runtime/cpp/setup_testing_root.sh; its test fixture
# builds the program). The emulated arm64 device (qemu-user-static, ~20 min the first time) is
# not part of the suite: `python -m benchmarks.android --emulate=arm64` builds it on demand.
set -euo pipefail
missing=()
command -v adb >/dev/null || missing+=(adb)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$REPO/benchmarks/android/device_root.sh" amd64 >/dev/null
