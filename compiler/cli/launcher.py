"""The `compile-transfer` console script. It exists in the plain (runtime-only) install too,
where the compiler's dependencies are missing: then it says in one line what to install,
instead of a traceback from deep inside an import."""

from __future__ import annotations

import importlib.util
import sys

# Import name -> distribution, for what the `compiler` extra installs (pyproject.toml).
COMPILER_DEPENDENCIES = {"tensorflow": "tensorflow-cpu", "absl": "absl-py", "flatbuffers": "flatbuffers"}


def missing_dependencies() -> list[str]:
    return [dist for module, dist in COMPILER_DEPENDENCIES.items() if importlib.util.find_spec(module) is None]


def run() -> None:
    missing = missing_dependencies()
    if missing:
        from tflite_transfer.runtime.installation import install_command  # noqa: PLC0415

        print(f"compile-transfer: error: the compiler needs {', '.join(missing)}, which this install "
              f"lacks (the plain install is the runtime only): {install_command('compiler')}", file=sys.stderr)
        sys.exit(2)
    from tflite_transfer.compiler.cli import main  # noqa: PLC0415 (TensorFlow only once every flag is checked)

    main.run()


if __name__ == "__main__":
    run()
