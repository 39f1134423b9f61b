"""Long fuzz campaign over the C++ runtime's readers (python -m benchmarks.fuzz.cpp_readers).

Drives the demo's inspection modes, one process per case (a crash is then a signal, a hang a
timeout, never lost):

    tflite_transfer_demo --check_checkpoint FILE            exit 0 + one JSON line, or 1 + one "error:" line
    tflite_transfer_demo --check_model --model FILE         the same for model open (digest first)

Cases: every single-bit flip and every truncation of a checkpoint the demo wrote for MODEL
(or a seeded sample of --max_cases), and a seeded sample of --max_model_cases flips and
truncations of MODEL itself (a contract-version-2 model with its digest). Outcomes: "clean error" (exit 1, one printable error line), "accepted"
(exit 0: for a flipped or truncated file, a failure of the checksum/digest), or "misbehaved"
(anything else: a signal, a timeout, several lines). Writes
benchmarks/results/fuzz-cpp-readers-<time>.{json,md}.

    python -m benchmarks.fuzz.cpp_readers --demo BUILD/tflite_transfer_demo --model MODEL.tflite
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common.report import machine_facts, result_paths, write_document

RESULTS = Path(__file__).resolve().parents[1] / "results"


def classify(result: subprocess.CompletedProcess | None) -> str:
    if result is None:
        return "misbehaved: timeout"
    lines = result.stderr.splitlines()
    if result.returncode == 0:
        return "accepted"
    if result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and lines[0].isprintable():
        return "clean error"
    return f"misbehaved: exit {result.returncode}, {len(lines)} stderr lines"


def damaged_files(data: bytes, max_cases: int | None, rng: random.Random):
    cases = [("flip", bit) for bit in range(len(data) * 8)] + [("truncate", size) for size in range(len(data))]
    if max_cases is not None and max_cases < len(cases):
        cases = rng.sample(cases, max_cases)
    for kind, where in cases:
        if kind == "flip":
            damaged = bytearray(data)
            damaged[where // 8] ^= 1 << (where % 8)
            yield kind, where, bytes(damaged)
        else:
            yield kind, where, data[:where]


def campaign(demo: str, subject: str, data: bytes, mode: list[str], max_cases: int | None, seed: int,
             work_dir: Path, timeout: float) -> dict:
    rng = random.Random(seed)
    outcomes = collections.Counter()
    examples: dict[str, str] = {}
    path = work_dir / f"case-{subject}"
    started = time.monotonic()
    for kind, where, damaged in damaged_files(data, max_cases, rng):
        path.write_bytes(damaged)
        try:
            result = subprocess.run([demo, *mode, str(path)], capture_output=True, text=True, timeout=timeout,
                                    errors="surrogateescape")
        except subprocess.TimeoutExpired:
            result = None
        outcome = classify(result)
        outcomes[f"{kind}: {outcome}"] += 1
        if outcome != "clean error":
            examples.setdefault(outcome, f"{kind} {where}: {result.stderr[-300:] if result else 'timeout'}")
    return {"subject": subject, "bytes": len(data), "cases": sum(outcomes.values()), "outcomes": dict(outcomes),
            "examples": examples, "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", required=True, help="tflite_transfer_demo (runtime/cpp/setup_testing_root.sh prints it)")
    parser.add_argument("--model", required=True, help="a compiled model (contract version 2, with its digest)")
    parser.add_argument("--max_cases", type=int, default=None, help="a seeded sample of checkpoint cases (default: all)")
    parser.add_argument("--max_model_cases", type=int, default=5000,
                        help="a seeded sample of model cases (every flip of a real model is ~10^5-10^8 cases)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--results_dir", default=str(RESULTS))
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        checkpoint = work_dir / "subject.ckpt"
        subprocess.run([arguments.demo, "--model", arguments.model, "--epochs", "0", "--checkpoint", str(checkpoint)],
                       check=True, capture_output=True)
        subjects = [campaign(arguments.demo, "checkpoint", checkpoint.read_bytes(), ["--check_checkpoint"],
                             arguments.max_cases, arguments.seed, work_dir, arguments.timeout),
                    campaign(arguments.demo, "model", Path(arguments.model).read_bytes(), ["--check_model", "--model"],
                             arguments.max_model_cases, arguments.seed + 1, work_dir, arguments.timeout)]
    paths = result_paths(arguments.results_dir, "fuzz-cpp-readers")
    lines = ["# Fuzz campaign: C++ checkpoint reader and model open", "",
             "| subject | bytes | cases | outcomes | seconds |", "|---|---|---|---|---|"]
    for subject in subjects:
        outcomes = ", ".join(f"{name}: {count}" for name, count in sorted(subject["outcomes"].items()))
        lines.append(f"| {subject['subject']} | {subject['bytes']} | {subject['cases']} | {outcomes} | {subject['seconds']} |")
    write_document(paths, {"machine": machine_facts(), "demo": arguments.demo, "model": arguments.model,
                           "subjects": subjects}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {paths['json']} and {paths['md']}")
    bad = sum(count for subject in subjects for name, count in subject["outcomes"].items() if "clean error" not in name)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
