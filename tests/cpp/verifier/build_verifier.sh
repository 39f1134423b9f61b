#!/usr/bin/env bash
# Builds verify_model.cc (TFLite's flatbuffer verifier over model files) in the Debian testing
# root that runtime/cpp/setup_testing_root.sh creates (Debian's libtensorflow-lite-dev 2.14),
# and writes a launcher that runs it with that root's loader and libraries:
#
#   tests/cpp/verifier/build_verifier.sh BUILD_DIR      -> prints BUILD_DIR/verify_model
#
# Needs root (chroot); creates the root first when it does not exist yet.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
BUILD_DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
ROOT="${TFLITE_TRANSFER_TESTING_ROOT:-$HOME/.cache/tflite_transfer_testing_root}"

die() { printf '[build_verifier] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "building in $ROOT needs root (chroot)"
if [ ! -f "$ROOT/.tflite_transfer_root" ]; then
    bash "$REPO/runtime/cpp/setup_testing_root.sh" "$BUILD_DIR/runtime" >/dev/null
fi

exec 9>"$ROOT.lock"   # the lock setup_testing_root.sh takes: one build at a time per root
flock 9
KEY="$(printf '%s' "$BUILD_DIR" | sha256sum | cut -c1-16)"
WORK="/build/verify_model-$KEY"
rm -rf "$ROOT$WORK"
mkdir -p "$ROOT$WORK"
cp "$HERE/verify_model.cc" "$ROOT$WORK/"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    g++ -std=c++17 -O1 -Wall -Wextra -o "$WORK/verify_model" "$WORK/verify_model.cc" -ltensorflow-lite >&2
MULTIARCH="$(chroot "$ROOT" /usr/bin/gcc -print-multiarch)"
LIBS="$ROOT/usr/lib/$MULTIARCH"
LOADER="$(ls "$LIBS"/ld-linux*.so.* | head -n 1)"
mkdir -p "$BUILD_DIR/bin"
cp "$ROOT$WORK/verify_model" "$BUILD_DIR/bin/.verify_model.new"
mv -f "$BUILD_DIR/bin/.verify_model.new" "$BUILD_DIR/bin/verify_model"
rm -rf "$ROOT$WORK"
cat > "$BUILD_DIR/verify_model" <<LAUNCHER
#!/bin/sh
# Runs verify_model (built in $ROOT) with that root's dynamic loader and libraries.
exec "$LOADER" --inhibit-cache --library-path "$LIBS" "$BUILD_DIR/bin/verify_model" "\$@"
LAUNCHER
chmod +x "$BUILD_DIR/verify_model"
echo "$BUILD_DIR/verify_model"
