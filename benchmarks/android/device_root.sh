#!/usr/bin/env bash
# Build (once, cached) a Debian root that serves the real adb protocol with /usr/sbin/adbd, for
# the adb runner's tests and the emulated arm64 device:
#
#   benchmarks/android/device_root.sh amd64   a trixie minbase root with adbd only: a Linux
#                                             "device" that lacks TFLite (the runner pushes it)
#   benchmarks/android/device_root.sh arm64   a Debian testing arm64 root with adbd, Debian's
#                                             libtensorflow-lite-dev and a compiler, run under
#                                             qemu-user-static (binfmt_misc registered here)
#   benchmarks/android/device_root.sh arm64 --build
#                                             also builds runtime/cpp (tflite_transfer_bench)
#                                             for arm64 against the root's TFLite (rebuilt only
#                                             when the sources change): with the host's cross
#                                             compiler when installed (~1 min), else with the
#                                             root's own compiler under emulation (~30+ min)
#
# Prints the root's path on stdout (with --build, then the program's path inside the root). Needs root (debootstrap, chroot, binfmt_misc). Environment:
# TFLITE_TRANSFER_ADBD_ROOT_<ARCH> (default ~/.cache/tflite_transfer_adbd_root_<arch>),
# DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

ARCH="${1:?usage: device_root.sh amd64|arm64}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
case "$ARCH" in
    amd64) SUITE=trixie; PACKAGES="adbd" ;;
    # Debian testing: the suite the C++ testing root uses, known to carry libtensorflow-lite-dev.
    arm64) SUITE=testing; PACKAGES="adbd,libtensorflow-lite-dev,g++,cmake,make,pkgconf" ;;
    *) echo "[device_root] error: unknown architecture '$ARCH' (use amd64 or arm64)" >&2; exit 2 ;;
esac
VAR="TFLITE_TRANSFER_ADBD_ROOT_${ARCH^^}"
ROOT="${!VAR:-$HOME/.cache/tflite_transfer_adbd_root_$ARCH}"
STAMP="$ROOT/.tflite_transfer_root"

log() { printf '[device_root] %s\n' "$*" >&2; }
die() { printf '[device_root] error: %s\n' "$*" >&2; exit 1; }

register_qemu_aarch64() {
    # Without this registration debootstrap's second stage and every arm64 child process fail
    # (or, worse, silently run a host binary of the same name).
    [ -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || [ -x /usr/bin/qemu-aarch64-static ] \
        || die "qemu-user-static is missing (apt-get install qemu-user-static)"
    [ -e /proc/sys/fs/binfmt_misc/register ] \
        || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
        || die "cannot mount binfmt_misc (needs root)"
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ] || die "no /usr/lib/binfmt.d/qemu-aarch64.conf"
        cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register \
            || die "cannot register qemu-aarch64 with binfmt_misc"
    fi
}

create_root() {
    [ "$(id -u)" = 0 ] || die "creating $ROOT needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local partial="$ROOT.partial"
    rm -rf "$partial"
    mkdir -p "$(dirname "$ROOT")"
    log "debootstrapping Debian $SUITE ($ARCH) into $partial (amd64 ~1 min, arm64 ~7 min)"
    debootstrap --arch="$ARCH" --variant=minbase --include="$PACKAGES" "$SUITE" "$partial" \
        "$MIRROR" > "$partial.log" 2>&1 || { tail -20 "$partial.log" >&2; die "debootstrap \
failed (full log: $partial.log)"; }
    [ -x "$partial/usr/bin/adbd" ] || [ -x "$partial/usr/sbin/adbd" ] \
        || die "adbd did not install into $partial"
    # adbd's shell runs /system/bin/sh on Android; Debian's adbd uses /bin/sh. The runner's
    # staging directory is the Android one.
    mkdir -p "$partial/data/local/tmp"
    chmod 1777 "$partial/data/local/tmp"
    printf '%s %s %s\n' "$SUITE" "$ARCH" "$PACKAGES" > "$partial/.tflite_transfer_root"
    rm -rf "$ROOT"
    mv "$partial" "$ROOT"
    mv "$partial.log" "$ROOT/.debootstrap.log"
}

[ "$ARCH" = amd64 ] || register_qemu_aarch64
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SUITE $ARCH $PACKAGES" ]; then
    log "reusing $ROOT"
else
    create_root
fi
echo "$ROOT"
[ "${2:-}" = --build ] || exit 0

# Build runtime/cpp inside the root with its own compiler and TFLite, once per source state.
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../runtime/cpp" && pwd)"
[ -x "$ROOT/usr/bin/cmake" ] || die "$ROOT has no compiler (only the arm64 root builds the program)"
SOURCE_HASH="$(tar -C "$SOURCE_DIR" --exclude=./build --sort=name --mtime=@0 --owner=0 --group=0 \
    -cf - . | sha256sum | cut -c1-16)"
PROGRAM=/build/tflite_transfer_cpp/tflite_transfer_bench
if [ "$(cat "$ROOT/build/.source_hash" 2>/dev/null)" != "$SOURCE_HASH" ] || [ ! -x "$ROOT$PROGRAM" ]; then
    rm -rf "$ROOT/src/tflite_transfer_cpp" "$ROOT/build/tflite_transfer_cpp"
    mkdir -p "$ROOT/src/tflite_transfer_cpp" "$ROOT/build"
    tar -C "$SOURCE_DIR" --exclude=./build -cf - . | tar -C "$ROOT/src/tflite_transfer_cpp" -xmf -
    if command -v aarch64-linux-gnu-g++ >/dev/null; then
        # The host's cross compiler (apt-get install g++-aarch64-linux-gnu) with the root as
        # sysroot: the same headers and arm64 libraries, ~50x faster than the root's own
        # compiler under emulation. The root's libstdc++ and glibc come first on the link line
        # (the cross toolchain's own are older than the root's libtensorflow-lite needs).
        LIBDIRS="-L$ROOT/usr/lib/gcc/aarch64-linux-gnu/$(ls "$ROOT/usr/lib/gcc/aarch64-linux-gnu" | sort -V | tail -1)"
        LIBDIRS="$LIBDIRS -L$ROOT/usr/lib/aarch64-linux-gnu -Wl,-rpath-link,$ROOT/usr/lib/aarch64-linux-gnu"
        cat > "$ROOT/build/aarch64-toolchain.cmake" <<TOOLCHAIN
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_SYSROOT $ROOT)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_EXE_LINKER_FLAGS_INIT "$LIBDIRS")
TOOLCHAIN
        log "cross-compiling tflite_transfer_bench for arm64 against $ROOT"
        cmake -S "$ROOT/src/tflite_transfer_cpp" -B "$ROOT/build/tflite_transfer_cpp" \
            -DCMAKE_TOOLCHAIN_FILE="$ROOT/build/aarch64-toolchain.cmake" -DCMAKE_BUILD_TYPE=Release >&2
        cmake --build "$ROOT/build/tflite_transfer_cpp" --target tflite_transfer_bench --parallel "$(nproc)" >&2
    else
        log "building tflite_transfer_bench inside $ROOT with its arm64 compiler under emulation (tens \
of minutes; apt-get install g++-aarch64-linux-gnu to cross-compile instead)"
        chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 cmake \
            -S /src/tflite_transfer_cpp -B /build/tflite_transfer_cpp -DCMAKE_BUILD_TYPE=Release >&2
        chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 cmake \
            --build /build/tflite_transfer_cpp --target tflite_transfer_bench --parallel "$(nproc)" >&2
    fi
    echo "$SOURCE_HASH" > "$ROOT/build/.source_hash"
fi
echo "$PROGRAM"
