"""Bounded fuzz of the compiler's reading of a user's base: seeded single-bit flips and
truncations of the tiny .tflite classifier (tests/fixtures/bases.py).

A damaged base must end in a TransferError (the CLI's one line) or be read and compiled:
a flip in a weight or a name can leave a valid model, and that is fine. Any other exception
(struct.error, TypeError, UnicodeDecodeError...) is a bug, and so is a crash of the process.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

from tflite_transfer.compiler.passes import cut
from tflite_transfer.compiler.flatbuffer import model_io
from tests.helpers import outcomes_of

REPO = Path(__file__).resolve().parents[3]
SEED = 20261201
FLIPS, TRUNCATIONS = 300, 60
COMPILED_FLIPS = 6          # parsed flips run through every pass, in a child process


def damaged_copies(data: bytes, seed: int, flips: int, truncations: int):
    """(label, bytes): `flips` single-bit flips, then `truncations` prefixes."""
    rng = random.Random(seed)
    for _ in range(flips):
        bit = rng.randrange(len(data) * 8)
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        yield f"bit {bit} flipped", bytes(damaged)
    for _ in range(truncations):
        size = rng.randrange(len(data))
        yield f"truncated to {size} bytes", data[:size]


def read_and_cut(data: bytes, base_output: str, source: str) -> None:
    """What the compiler does with a .tflite base before it builds the head."""
    cut.prepare_base(model_io.read_model_bytes(data, source), base_output, source)


def test_damaged_bases_give_project_errors_only(tiny_classifier_path, tiny_pool_name):
    data = open(tiny_classifier_path, "rb").read()
    outcomes = outcomes_of(lambda label, damaged: read_and_cut(damaged, tiny_pool_name, "damaged.tflite"),
                           damaged_copies(data, SEED, FLIPS, TRUNCATIONS))
    assert sum(outcomes.values()) == FLIPS + TRUNCATIONS
    # Both paths are exercised: some damage is refused, some leaves a readable model.
    assert outcomes["read"] > 0 and outcomes["InvalidInputError"] > 0, dict(outcomes)


CHILD = textwrap.dedent("""
    import json, sys
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler import pipeline
    from tflite_transfer.compiler.errors import TransferError
    from tests.compiler.base.test_base_fuzz import damaged_copies, read_and_cut
    path, base_output, seed, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    data = open(path, "rb").read()
    done = 0
    for label, damaged in damaged_copies(data, seed, 10 * wanted, 0):
        try:
            read_and_cut(damaged, base_output, "damaged.tflite")
        except TransferError:
            continue
        if damaged == data:
            continue
        print(json.dumps({"case": label, "outcome": "started"}), flush=True)
        try:
            base = sources.BaseSource(damaged, model_io.read_model_bytes(damaged, "damaged.tflite"),
                                    "damaged", False, base_output, "damaged.tflite")
            result = pipeline.compile_from_base(base, pipeline.HeadOptions(num_classes=3),
                                                verify_steps=0, progress=lambda message: None)
            outcome = "compiled"
        except TransferError as error:
            outcome = type(error).__name__ + ": " + str(error)
        except Exception as error:
            outcome = "RAW " + type(error).__name__ + ": " + str(error)
        print(json.dumps({"case": label, "outcome": outcome}), flush=True)
        done += 1
        if done == wanted:
            break
""")


def test_damaged_bases_that_parse_compile_or_give_project_errors(tiny_classifier_path, tiny_pool_name):
    """Flips that survive reading go through every pass, including the final run of every
    signature in the interpreter; a child process, since LiteRT can abort on damaged models."""
    process = subprocess.run([sys.executable, "-c", CHILD, tiny_classifier_path, tiny_pool_name,
                              str(SEED + 1), str(COMPILED_FLIPS)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                             cwd=REPO)  # the child imports tests.*: the repository root, whatever pytest's cwd
    records = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    assert process.returncode == 0, (f"the child died (code {process.returncode}) during "
                                     f"{records[-1] if records else 'start-up'}: {process.stderr[-2000:]}")
    finished = [r for r in records if r["outcome"] != "started"]
    assert len(finished) == COMPILED_FLIPS, process.stderr[-2000:]
    raw = [r for r in finished if r["outcome"].startswith("RAW")]
    assert not raw, raw
