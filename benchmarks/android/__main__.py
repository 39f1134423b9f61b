"""Benchmark a compiled .tflite on a device over adb with our tflite_transfer_bench.

NAME
    python -m benchmarks.android - time every signature of a compiled model on a device

SYNOPSIS
    python -m benchmarks.android --model MODEL.tflite --program tflite_transfer_bench
        [--library libtensorflowlite.so ...] [--serial SERIAL ...] [--threads 1,4] [--runs 20]
        [--train_batches 1,8,32] [--results_dir benchmarks/results]
    python -m benchmarks.android --model MODEL.tflite --tool benchmark_model
        --program android_aarch64_benchmark_model [--signatures load,infer,train]
        [--use_xnnpack true|false|both] [--keep_going]
    python -m benchmarks.android --model MODEL.tflite --emulate arm64

DESCRIPTION
    Picks the device (--serial, or the only one `adb devices` lists), reads its ABI, model and
    Android or Linux version, refuses a --program built for another ABI, pushes the model and
    the program to /data/local/tmp/tflite_transfer/ and asks the program for --version. If
    the device lacks the TFLite shared library, the --library files (or, with --bundle_root,
    every library the program uses in the Debian root it was built in) are pushed too. Then it
    runs the program through `adb shell` once per --threads, pulls its JSON and writes
    <results_dir>/<title>-<UTC time>.json (every figure) and .md (a table). The pushed files
    are removed from the device at the end, also after a failure.

    tflite_transfer_bench (runtime/cpp, BUILD.md "On-device benchmark") opens the model with
    the C++ runtime (digest, metadata, signature contract), times load and infer at batch 1,
    train at --train_batches on random bottlenecks, train_images at batch 1, save and restore
    through a checkpoint file, and reports the peak RSS, thread count and TFLite version.
    --tool benchmark_model runs TFLite's own tool instead, where a phone has it.

    --emulate arm64 needs no phone: it builds a Debian arm64 root under qemu-user-static with
    adbd and Debian's arm64 TFLite, builds the program there, serves it through adbd in a
    network namespace (root needed) and runs the same steps. Its timings are emulated.

EXAMPLES
    adb devices                       # "List of devices attached" / "1A2B3C4D  device"
    python -m benchmarks.android --model transfer_model.tflite \\
        --program build-android/tflite_transfer_bench --library jni/arm64-v8a/libtensorflowlite_jni.so
    adb connect 192.168.1.20:5555 && python -m benchmarks.android --serial 192.168.1.20:5555 ...

EXIT STATUS
    0 when every run succeeded; 1 with one "error: ..." line on stderr naming the device and
    what to do (no device, several devices without --serial, unauthorized, a failed push, the
    program's crash with its exit status and last lines, a program built for another ABI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tflite_transfer.runtime.errors import InvalidInputError, TransferError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.android", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", help="The compiled .tflite to benchmark (required unless --help).")
    add("--tool", default="bench", choices=("bench", "benchmark_model"),
        help="bench: our tflite_transfer_bench; benchmark_model: TFLite's tool.")
    add("--program", default="runtime/cpp/build/bin/tflite_transfer_bench",
        help="The program built for the device's ABI (tflite_transfer_bench or benchmark_model).")
    add("--library", action="append", default=[], help="A shared library to push when the device "
        "lacks it (Android: libtensorflowlite_jni.so of the LiteRT AAR); repeat for several.")
    add("--bundle_root", help="The Debian root --program was built against (e.g. the C++ testing "
        "root): push every library it uses there, with its glibc loader, when the device lacks them.")
    add("--serial", action="append", default=[], help="adb serial of a device, as `adb devices` "
        "lists it; repeat for several; default: the only attached device.")
    add("--threads", default="1", help="Interpreter thread counts, comma-separated.")
    add("--runs", type=int, default=20, help="Timed runs per signature and batch (benchmark_model: --num_runs).")
    add("--train_batches", default="1,8,32", help="Batch sizes of `train` (bench only).")
    add("--signatures", default="load,infer,train", help="Signatures (benchmark_model only).")
    add("--use_xnnpack", default="true", choices=("true", "false", "both"), help="XNNPACK (benchmark_model only).")
    add("--keep_going", action="store_true", help="Record a failed benchmark_model run and continue.")
    add("--no_peak_memory", dest="peak_memory", action="store_false",
        help="Do not pass benchmark_model --report_peak_memory_footprint.")
    add("--results_dir", default="benchmarks/results", help="Where the .json and .md report go.")
    add("--adb", default="adb", help="The adb executable.")
    add("--emulate", choices=("arm64",), help="Build and use an emulated device instead of a real one.")
    return parser


def _integers(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(value) for value in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--{flag} {text}: give integers, e.g. 1,4.") from None


def main(argv: list[str] | None = None) -> int:
    from benchmarks.android.emulate import run_emulated
    from benchmarks.android.runner import RunPlan, run_on_devices
    from benchmarks.android.staging import ProgramBundle, bundle_from_debian_root

    FLAGS = _parser().parse_args(argv)
    if not FLAGS.model:
        print("error: --model is required; see --help.", file=sys.stderr)
        return 1
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        threads = _integers(FLAGS.threads, "threads")
        train_batches = _integers(FLAGS.train_batches, "train_batches")
        if FLAGS.emulate:
            measurements, json_path, markdown_path = run_emulated(
                FLAGS.emulate, Path(FLAGS.model), FLAGS.runs, threads, train_batches,
                Path(FLAGS.results_dir), progress)
        else:
            if FLAGS.bundle_root:
                bundle = bundle_from_debian_root(Path(FLAGS.bundle_root), Path(FLAGS.program))
            else:
                bundle = ProgramBundle(Path(FLAGS.program), tuple(Path(p) for p in FLAGS.library))
            plan = RunPlan(
                model=Path(FLAGS.model), bundle=bundle, tool=FLAGS.tool, serials=tuple(FLAGS.serial),
                threads=threads, runs=FLAGS.runs, train_batches=train_batches,
                signatures=tuple(FLAGS.signatures.split(",")),
                use_xnnpack={"true": (True,), "false": (False,), "both": (True, False)}[FLAGS.use_xnnpack],
                keep_going=FLAGS.keep_going, peak_memory=FLAGS.peak_memory, adb=(FLAGS.adb,),
                results_dir=Path(FLAGS.results_dir))
            measurements, json_path, markdown_path = run_on_devices(plan, progress)
    except TransferError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    failed = sum(m.failed for m in measurements)
    print(f"wrote {json_path} and {markdown_path} ({len(measurements)} rows, {failed} failed or skipped)")
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
