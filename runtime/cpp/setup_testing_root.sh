#!/usr/bin/env bash
# Build the C++ runtime against Debian's stock libtensorflow-lite-dev (2.14, Debian testing)
# on a machine whose own release (e.g. bookworm) does not ship it:
#   1. debootstrap a minimal Debian testing root once, with g++, cmake and the library in it
#      (cached; reused while its stamp file says the same package list);
#   2. copy runtime/cpp into it and build there with CMake (chroot);
#   3. write launchers in the build directory that run the binaries with the root's own
#      dynamic loader and libraries, so they read and write host paths without a chroot.
#
#   runtime/cpp/setup_testing_root.sh [BUILD_DIR]      (default: runtime/cpp/build)
#
# Needs root for debootstrap and chroot (installs debootstrap with apt-get when missing).
# Environment: TFLITE_TRANSFER_TESTING_ROOT (default ~/.cache/tflite_transfer_testing_root),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), DEBIAN_SUITE (default testing).
set -euo pipefail

SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_DIR="$(mkdir -p "${1:-$SOURCE_DIR/build}" && cd "${1:-$SOURCE_DIR/build}" && pwd)"
ROOT="${TFLITE_TRANSFER_TESTING_ROOT:-$HOME/.cache/tflite_transfer_testing_root}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${DEBIAN_SUITE:-testing}"
PACKAGES="libtensorflow-lite-dev,g++,cmake,make,pkgconf"
STAMP="$ROOT/.tflite_transfer_root"

log() { printf '[setup_testing_root] %s\n' "$*" >&2; }
die() { printf '[setup_testing_root] error: %s\n' "$*" >&2; exit 1; }

create_root() {
    [ "$(id -u)" = 0 ] || die "creating $ROOT needs root (debootstrap, chroot); run as root or \
point TFLITE_TRANSFER_TESTING_ROOT at an existing root"
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -q debootstrap >/dev/null; } \
            || die "could not install debootstrap (apt-get install debootstrap)"
    fi
    local partial="$ROOT.partial"
    rm -rf "$partial"
    mkdir -p "$(dirname "$ROOT")"
    log "debootstrapping Debian $SUITE into $partial (a few minutes; cached afterwards)"
    # minbase + --include: debootstrap resolves the packages' dependencies itself; no
    # recommends, no docs needed. A partial root is never used: it is renamed at the end.
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$partial" "$MIRROR" \
        > "$partial.log" 2>&1 || { tail -20 "$partial.log" >&2; die "debootstrap failed \
(full log: $partial.log)"; }
    [ -f "$partial/usr/include/tensorflow/lite/interpreter.h" ] \
        || die "libtensorflow-lite-dev did not install into $partial (not in Debian $SUITE?)"
    printf '%s %s %s\n' "$SUITE" "$PACKAGES" "$(chroot "$partial" dpkg-query -W \
        -f='${Version}' libtensorflow-lite-dev)" > "$partial/.tflite_transfer_root"
    rm -rf "$ROOT"
    mv "$partial" "$ROOT"
    mv "$partial.log" "$ROOT/.debootstrap.log"
}

# One setup or build at a time per root (parallel test sessions share the cache).
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9

if [ -f "$STAMP" ] && [ "$(cut -d' ' -f1-2 "$STAMP")" = "$SUITE $PACKAGES" ]; then
    log "reusing $ROOT ($(cat "$STAMP"))"
else
    create_root
fi

# Build inside the root: its compiler, headers and libraries are the stock Debian ones. Each
# build directory gets its own source and build trees in the root (other worktrees and test
# sessions share the root), and the binaries are copied out, so a later build elsewhere never
# swaps the programs a running test uses.
[ "$(id -u)" = 0 ] || die "building in $ROOT needs root (chroot)"
KEY="$(printf '%s' "$BUILD_DIR" | sha256sum | cut -c1-16)"
ROOT_SRC="/src/tflite_transfer_cpp-$KEY"
ROOT_BUILD="/build/tflite_transfer_cpp-$KEY"
rm -rf "$ROOT$ROOT_SRC" "$ROOT$ROOT_BUILD"
mkdir -p "$ROOT$ROOT_SRC"
tar -C "$SOURCE_DIR" --exclude=./build -cf - . | tar -C "$ROOT$ROOT_SRC" -xmf -
log "building with CMake in $ROOT$ROOT_BUILD"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    cmake -S "$ROOT_SRC" -B "$ROOT_BUILD" -DCMAKE_BUILD_TYPE=Release >&2
chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    cmake --build "$ROOT_BUILD" --parallel "$(nproc)" >&2

# Launchers: the binaries need the root's glibc and libtensorflow-lite, not the host's.
MULTIARCH="$(chroot "$ROOT" /usr/bin/gcc -print-multiarch)"
LIBS="$ROOT/usr/lib/$MULTIARCH"
LOADER="$(ls "$LIBS"/ld-linux*.so.* | head -n 1)"
mkdir -p "$BUILD_DIR/bin"
for program in tflite_transfer_demo tflite_transfer_bench tflite_transfer_golden tflite_transfer_fit; do
    # Copy then rename: a running program (mapped by the loader) must never see its file change.
    cp "$ROOT$ROOT_BUILD/$program" "$BUILD_DIR/bin/.$program.new"
    mv -f "$BUILD_DIR/bin/.$program.new" "$BUILD_DIR/bin/$program"
    cat > "$BUILD_DIR/$program" <<LAUNCHER
#!/bin/sh
# Runs $program (built in $ROOT) with that root's dynamic loader and libraries.
exec "$LOADER" --inhibit-cache --library-path "$LIBS" "$BUILD_DIR/bin/$program" "\$@"
LAUNCHER
    chmod +x "$BUILD_DIR/$program"
done
rm -rf "$ROOT$ROOT_SRC" "$ROOT$ROOT_BUILD"
log "built: $BUILD_DIR/tflite_transfer_demo"
echo "$BUILD_DIR/tflite_transfer_demo"
