"""Benchmarking a compiled model on a device over adb (a phone, a Linux board, or an emulated one).

Modules, in the order a run uses them: `adb` (device selection, push/pull/shell), `device` (ABI,
model, Android or Linux version; the program's ELF ABI), `staging` (model, program and, when the
device lacks it, the TFLite library), `bench_program` (our tflite_transfer_bench and its JSON),
`benchmark_model` (TFLite's tool, where a phone has it), `runner` (the whole run and the report).
`adbd` serves a Debian root through a real adbd in a network namespace (tests, emulation);
`emulate` is the arm64 device under qemu-user-static. The command line is `__main__`.
"""
