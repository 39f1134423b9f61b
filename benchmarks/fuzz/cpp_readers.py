"""Long fuzz campaign over the C++ runtime's readers (python -m benchmarks.fuzz.cpp_readers).

Drives the demo's inspection modes, one process per case (a crash is then a signal, a hang a
timeout, never lost):

    tflite_transfer_demo --check_checkpoint FILE            exit 0 + one JSON line, or 1 + one "error:" line
    tflite_transfer_demo --check_model --model FILE         the same for model open (digest first)

Cases: every single-bit flip and every truncation of a checkpoint the demo wrote for MODEL
(or a seeded sample of --max_cases), and a seeded sample of --max_model_cases flips and
truncations of MODEL itself (a contract-version-2 model with its digest). Outcomes: "clean error" (exit 1, one printable error line), "accepted"
(exit 0: for a flipped or truncated file, a failure of the checksum/digest), or "misbehaved"
(anything else: a signal, a timeout, several lines). Then the hardening attacks of
benchmarks/fuzz/cpp_attacks.py (concurrent saves, long names, valid-checksum oversized
checkpoints, non-regular targets, digest-off structure checks, demo numbers). Writes
benchmarks/results/fuzz-cpp-readers-<time>.{json,md}. Needs root (a device node of its own).

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
from benchmarks.fuzz import cpp_attacks

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
    # 5 at a time: the race the writer lost (a cleanup removing a live temporary file) hit 8 of
    # 500 such saves before the fix, and 0 of 200 with 2 at a time in one run (2 of 200 in another).
    parser.add_argument("--concurrent_rounds", type=int, default=40, help="rounds of concurrent saves of one path")
    parser.add_argument("--concurrent_processes", type=int, default=5, help="demo processes saving at once per round")
    parser.add_argument("--digest_off_samples", type=int, default=1000,
                        help="seeded bit flips of MODEL run with --skip_digest_check (load + train)")
    parser.add_argument("--only_attacks", action="store_true", help="skip the flip/truncation campaigns")
    parser.add_argument("--label", default="", help="appended to the report's name (e.g. 'before')")
    parser.add_argument("--results_dir", default=str(RESULTS))
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        checkpoint = work_dir / "subject.ckpt"
        subprocess.run([arguments.demo, "--model", arguments.model, "--epochs", "0", "--checkpoint", str(checkpoint)],
                       check=True, capture_output=True)
        subjects = [] if arguments.only_attacks else [
            campaign(arguments.demo, "checkpoint", checkpoint.read_bytes(), ["--check_checkpoint"],
                     arguments.max_cases, arguments.seed, work_dir, arguments.timeout),
            campaign(arguments.demo, "model", Path(arguments.model).read_bytes(), ["--check_model", "--model"],
                     arguments.max_model_cases, arguments.seed + 1, work_dir, arguments.timeout)]
        attacks = run_attacks(arguments, work_dir)
    paths = result_paths(arguments.results_dir, "fuzz-cpp-readers" + (f"-{arguments.label}" if arguments.label else ""))
    lines = ["# Fuzz campaign: C++ checkpoint reader, model open and hardening attacks", "",
             f"Demo: `{arguments.demo}`; model: `{arguments.model}`. Rerun: `python -m benchmarks.fuzz.cpp_readers "
             "--demo DEMO --model MODEL` (root).", ""]
    if subjects:
        lines += ["| subject | bytes | cases | outcomes | seconds |", "|---|---|---|---|---|"]
        for subject in subjects:
            outcomes = ", ".join(f"{name}: {count}" for name, count in sorted(subject["outcomes"].items()))
            lines.append(f"| {subject['subject']} | {subject['bytes']} | {subject['cases']} | {outcomes} | {subject['seconds']} |")
        lines.append("")
    lines += ["| attack | cases | outcomes | seconds |", "|---|---|---|---|"]
    for attack in attacks:
        outcomes = ", ".join(f"{name}: {count}" for name, count in sorted(attack["outcomes"].items()))
        lines.append(f"| {attack['attack']} | {attack['cases']} | {outcomes} | {attack['seconds']} |")
    for attack in attacks:
        for run in attack.get("runs", []):
            lines.append(f"- {attack['attack']}: {run['file_bytes']:,} bytes ({run['owner']}): {run['outcome']}, "
                         f"{run['bytes_read']:,} bytes read, {run['seconds']} s" if run["bytes_read"] is not None
                         else f"- {attack['attack']}: {run['file_bytes']:,} bytes: {run['outcome']}")
        for outcome, example in attack["examples"].items():
            lines.append(f"- {attack['attack']}, {outcome}: `{example[:200]}`")
    write_document(paths, {"machine": machine_facts(), "demo": arguments.demo, "model": arguments.model,
                           "subjects": subjects, "attacks": attacks}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {paths['json']} and {paths['md']}")
    bad = sum(count for subject in subjects for name, count in subject["outcomes"].items() if "clean error" not in name)
    bad += sum(count for attack in attacks for name, count in attack["outcomes"].items()
               if "misbehaved" in name or "failed" in name)
    return 1 if bad else 0


def run_attacks(arguments, work_dir: Path) -> list[dict]:
    from tflite_transfer.runtime.interpreter import read_metadata  # noqa: PLC0415 (no TensorFlow)

    metadata = read_metadata(Path(arguments.model).read_bytes(), arguments.model)
    state = [{"name": e.name, "dtype": e.dtype, "shape": list(e.shape), "role": e.role} for e in metadata.state]
    attacks = []
    for name, call in [
        ("concurrent", lambda folder: cpp_attacks.concurrent_saves(arguments.demo, arguments.model, folder,
                                                                   arguments.concurrent_rounds,
                                                                   arguments.concurrent_processes)),
        ("long names", lambda folder: cpp_attacks.long_names(arguments.demo, arguments.model, folder, arguments.timeout)),
        ("oversized", lambda folder: cpp_attacks.oversized_checkpoints(arguments.demo, arguments.model, state,
                                                                       metadata.fingerprint, folder, arguments.timeout)),
        ("non-regular", lambda folder: cpp_attacks.non_regular_targets(arguments.demo, arguments.model, folder,
                                                                       arguments.timeout)),
        ("digest off", lambda folder: cpp_attacks.digest_off_structure(arguments.demo, arguments.model, folder,
                                                                       arguments.digest_off_samples,
                                                                       arguments.seed + 2, arguments.timeout)),
        ("demo numbers", lambda folder: cpp_attacks.demo_numbers(arguments.demo, arguments.model, folder,
                                                                 arguments.timeout)),
    ]:
        folder = work_dir / name.replace(" ", "-")
        folder.mkdir()
        print(f"attack: {name}", flush=True)
        attacks.append(call(folder))
        print(f"  {attacks[-1]['outcomes']}", flush=True)
    return attacks


if __name__ == "__main__":
    sys.exit(main())
