"""python -m tflite_transfer.compiler.cli: the compile-transfer command."""

from tflite_transfer.compiler.cli.launcher import run

run()
