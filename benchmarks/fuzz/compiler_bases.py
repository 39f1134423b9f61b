"""Long fuzz campaign over the compiler's reading of a user's .tflite base
(python -m benchmarks.fuzz.compiler_bases).

Cases: a seeded sample of single-bit flips and truncations of the tiny uint8 classifier
(tests/fixtures/bases.py; every flip and truncation with --max_cases=0). Each damaged base
goes through what `compile-transfer --base=FILE --noverify` does: read (model_io), then every
pass up to the run of every signature in LiteRT. Outcomes: "refused on reading" / "refused
while compiling" (a TransferError: the CLI's one line), "compiled" (the damage left a valid
model: a flipped weight), "RAW <exception>" (a bug) or "ABORT (<signal>)" (the process died:
cases run in a worker process that is restarted after the case that killed it).
Writes benchmarks/results/fuzz-compiler-bases-<time>.{json,md}. The bounded version in the
default suite: tests/compiler/base/test_base_fuzz.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.fuzz.damage import damage

from benchmarks.common.report import machine_facts, result_paths, write_document

RESULTS = Path(__file__).resolve().parents[1] / "results"
ROOT = Path(__file__).resolve().parents[2]


def worker() -> None:
    """Reads cases (JSON lines) from stdin, prints one JSON outcome line per case."""
    from tests.fixtures.bases import tiny_uint8_classifier
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler import pipeline
    from tflite_transfer.compiler.errors import TransferError

    data = tiny_uint8_classifier()
    model = model_io.read_model_bytes(data)
    subgraph = model.subgraphs[0]
    pool = next(model_io.tensor_name(subgraph.tensors[op.outputs[0]]) for op in subgraph.operators
                if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "MEAN")
    head = pipeline.HeadOptions(num_classes=3)
    for line in sys.stdin:
        case = json.loads(line)
        damaged = damage(data, case)
        stage = "reading"
        try:
            base = sources.BaseSource(damaged, model_io.read_model_bytes(damaged, "base.tflite"), "damaged base",
                                    False, pool, "base.tflite")
            stage = "compiling"
            pipeline.compile_from_base(base, head, verify_steps=0, progress=lambda message: None)
            outcome = "compiled (identical file)" if damaged == data else "compiled"
        except TransferError as error:
            outcome = f"refused while {stage}: {type(error).__name__}"
            if "\n" in str(error):
                outcome = f"MULTI-LINE {outcome}"
        except Exception as error:  # noqa: BLE001 (what the campaign looks for)
            outcome = f"RAW {type(error).__name__} while {stage}: {str(error).splitlines()[0][:120] if str(error) else ''}"
        print(json.dumps([case, outcome]), flush=True)


def run_cases(cases: list) -> tuple[collections.Counter, dict]:
    outcomes, examples = collections.Counter(), {}
    remaining = list(cases)
    while remaining:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.fuzz.compiler_bases", "--worker"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True, cwd=ROOT)
        try:
            stdout, _ = process.communicate("".join(json.dumps(case) + "\n" for case in remaining))
        finally:  # also on KeyboardInterrupt: the worker must not outlive the campaign
            if process.poll() is None:
                process.kill()
                process.wait()
        done = [json.loads(line) for line in stdout.splitlines() if line.startswith("[")]
        for case, outcome in done:
            outcomes[outcome] += 1
            if outcome.startswith(("RAW", "MULTI")):
                examples.setdefault(outcome, case)
        remaining = remaining[len(done):]
        if process.returncode != 0 and remaining:  # died on remaining[0]
            name = signal.Signals(-process.returncode).name if process.returncode < 0 else f"exit {process.returncode}"
            outcomes[f"ABORT ({name})"] += 1
            examples.setdefault(f"ABORT ({name})", remaining[0])
            remaining = remaining[1:]
    return outcomes, examples


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--worker"]:
        worker()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_cases", type=int, default=400, help="a seeded sample of cases; 0: all")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--results_dir", default=str(RESULTS))
    arguments = parser.parse_args(argv)
    from tests.fixtures.bases import tiny_uint8_classifier

    size = len(tiny_uint8_classifier())
    cases = [["flip", bit] for bit in range(size * 8)] + [["truncate", length] for length in range(size)]
    if arguments.max_cases and arguments.max_cases < len(cases):
        cases = random.Random(arguments.seed).sample(cases, arguments.max_cases)
    started = time.monotonic()
    outcomes, examples = run_cases(cases)
    seconds = round(time.monotonic() - started, 1)
    flips = sum(1 for kind, _ in cases if kind == "flip")
    lines = ["# Fuzz campaign: the compiler reading a damaged .tflite base", "",
             f"{len(cases)} cases ({flips} single-bit flips, {len(cases) - flips} truncations) of the tiny uint8 "
             f"classifier ({size} B), seed {arguments.seed}, {seconds} s. Each: read, then every pass up to "
             "running every signature (`--noverify`). Rerun: `python -m benchmarks.fuzz.compiler_bases`.", "",
             "| outcome | cases |", "|---|---|"]
    lines += [f"| {outcome} | {count} |" for outcome, count in outcomes.most_common()]
    if examples:
        lines += ["", "Examples: " + "; ".join(f"{outcome}: {case}" for outcome, case in examples.items())]
    paths = result_paths(arguments.results_dir, "fuzz-compiler-bases")
    write_document(paths, {"machine": machine_facts(), "seed": arguments.seed, "base_bytes": size,
                           "cases": len(cases), "seconds": seconds, "outcomes": dict(outcomes),
                           "examples": examples}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {paths['json']} and {paths['md']}")
    bad = sum(count for outcome, count in outcomes.items() if outcome.startswith(("RAW", "ABORT", "MULTI")))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
