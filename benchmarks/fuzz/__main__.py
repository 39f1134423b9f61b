"""Long fuzz campaign over the checkpoint reader and model open (python -m benchmarks.fuzz).

Cases: every single-bit flip and every truncation of a checkpoint of the tiny model (read and
restored through TransferModel: the state must stay unchanged) and of a 1280->4 Adam head's
checkpoint; every single-bit flip of the tiny compiled model (contract version 2, digest
checked) and a seeded sample of flips and truncations opened with verify_digest=False (what
the digest protects from: the issue's 3,385-flip measurement). Opened models run `infer` and
`train` once. Cases run in worker processes; a worker killed by a signal (LiteRT aborts on
some corrupt models) is recorded as an abort of the case it was running and restarted after it.
Then the hardening attacks of benchmarks/fuzz/attacks.py (concurrent saves, long names, oversized
valid-checksum checkpoints, absurd numbers through the API and the metadata); `--only attack`
runs those alone. Writes benchmarks/results/fuzz-<time>[-label].{json,md}: cases tried and
outcomes per class.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.fuzz import attacks
from benchmarks.fuzz.damage import damage

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _outcome(error: BaseException) -> str:
    text = str(error)
    for marker in (" is corrupt or incomplete: ", ": "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    words = "".join(ch if ch.isalpha() or ch == " " else " " for ch in text).split()
    return f"{type(error).__name__}: {' '.join(words[:6])}"


def worker(subject: str, model_path: str, data_path: str, work_dir: str) -> None:
    """Reads cases (JSON lines) from stdin, prints one JSON outcome line per case."""
    import numpy as np

    from tflite_transfer.runtime import TransferModel
    from tflite_transfer.runtime.checkpoint import read_checkpoint
    from tflite_transfer.runtime.errors import TransferError

    data = Path(data_path).read_bytes()
    model = TransferModel.open(model_path) if subject == "restore" else None
    before = model.get_state() if model else None
    target = os.path.join(work_dir, f"case-{os.getpid()}")
    for line in sys.stdin:
        case = json.loads(line)
        damaged = damage(data, case)
        try:
            if subject in ("restore", "checkpoint"):
                with open(target, "wb") as handle:
                    handle.write(damaged)
                if model is not None:
                    model.restore_checkpoint(target)
                else:
                    read_checkpoint(target)
            else:
                opened = TransferModel.open(damaged, verify_digest=subject == "model")
                image = np.zeros((1, *opened.image_shape), opened.image_dtype)
                opened.predict(image)
                labels = [0] if opened.classifies else np.zeros((1, opened.num_classes), np.float32)
                opened.train_bottlenecks(np.ones((1, opened.bottleneck_shape[0]), np.float32), labels)
            outcome = "accepted (identical file)" if damaged == data else "ACCEPTED"
        except TransferError as error:
            outcome = _outcome(error)
        except Exception as error:  # noqa: BLE001 (what the campaign looks for)
            frame = traceback.extract_tb(error.__traceback__)[-1]
            outcome = f"RAW {type(error).__name__} at {os.path.basename(frame.filename)}:{frame.lineno}"
        if model is not None and outcome != "accepted (identical file)":
            state = model.get_state()
            if any(not np.array_equal(state[name], before[name]) for name in state):
                outcome += " + STATE CHANGED"
        print(json.dumps([case, outcome]), flush=True)


def run_cases(subject: str, model_path: str, data_path: str, cases: list, work_dir: str) -> collections.Counter:
    outcomes: collections.Counter = collections.Counter()
    remaining = list(cases)
    while remaining:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fuzz", "--worker", subject, model_path, data_path, work_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parents[2])
        try:  # the worker reads its stdin to the end; a writer thread would only matter for huge lists
            stdout, _ = process.communicate("".join(json.dumps(c) + "\n" for c in remaining))
        finally:  # also on KeyboardInterrupt: the worker must not outlive the campaign
            if process.poll() is None:
                process.kill()
                process.wait()
        done = [json.loads(line) for line in stdout.splitlines() if line.startswith("[")]
        for _, outcome in done:
            outcomes[outcome] += 1
        remaining = remaining[len(done):]
        if process.returncode != 0 and remaining:  # died on remaining[0]
            name = signal.Signals(-process.returncode).name if process.returncode < 0 else f"exit {process.returncode}"
            outcomes[f"ABORT ({name})"] += 1
            print(f"  {subject}: case {remaining[0]} killed the process ({name})", flush=True)
            remaining = remaining[1:]
    return outcomes


def _subjects(work_dir: str) -> dict[str, str]:
    import numpy as np

    from benchmarks.fuzz.subjects import rewrite_model
    from tests.fixtures.bases import tiny_uint8_classifier
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler.flatbuffer import model_io
    from tflite_transfer.compiler import pipeline
    from tflite_transfer.runtime import TransferModel
    from tflite_transfer.runtime.checkpoint import fingerprint, write_checkpoint

    base_path = os.path.join(work_dir, "tiny_base.tflite")
    Path(base_path).write_bytes(tiny_uint8_classifier())
    base_model = model_io.read_model(base_path)
    subgraph = base_model.subgraphs[0]
    pool = next(model_io.tensor_name(subgraph.tensors[op.outputs[0]]) for op in subgraph.operators
                if model_io.operator_name(base_model.operatorCodes[op.opcodeIndex]) == "MEAN")
    base = sources.load_base(sources.BaseOptions(base=base_path, base_output=pool), lambda m: None)
    fused = pipeline.compile_from_base(base, pipeline.HeadOptions(num_classes=3, learning_rate=0.1),
                                       verify_steps=0, progress=lambda m: None)
    paths = {"model": os.path.join(work_dir, "tiny.tflite"), "restore": os.path.join(work_dir, "tiny.ckpt"),
             "checkpoint": os.path.join(work_dir, "head_1280_4_adam.ckpt")}
    Path(paths["model"]).write_bytes(rewrite_model(fused.model_bytes))
    model = TransferModel.open(paths["model"])
    model.add_bottlenecks(np.random.default_rng(0).random((6, 7), np.float32), [0, 1, 2, 0, 1, 2])
    model.fit(epochs=2, batch_size=3, progress=False)
    model.save_checkpoint(paths["restore"])
    rng = np.random.default_rng(1)
    head = {"dense_0_kernel": rng.normal(size=(4, 1280)).astype(np.float32), "dense_0_bias": rng.normal(size=4).astype(np.float32),
            "dense_0_kernel_m": rng.normal(size=(4, 1280)).astype(np.float32), "dense_0_kernel_v": rng.random((4, 1280), np.float32),
            "dense_0_bias_m": rng.normal(size=4).astype(np.float32), "dense_0_bias_v": rng.random(4, np.float32),
            "step": np.array([1234], np.int32), "learning_rate": np.array([0.001], np.float32)}
    write_checkpoint(paths["checkpoint"], head, fingerprint([b"a 1280->4 adam head"]))
    return paths


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unchecked_samples", type=int, default=3385,
                        help="flips of the model opened with verify_digest=False (the issue measured 3,385)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="run only the campaigns whose title contains this")
    parser.add_argument("--max_cases", type=int, default=None,
                        help="at most this many cases per campaign (a seeded sample; default: all)")
    parser.add_argument("--label", default="", help="appended to the report's name (e.g. 'before')")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.time()
    report = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"), "seed": args.seed,
              "campaigns": []}
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-fuzz-") as work_dir:
        paths = _subjects(work_dir)
        model_size = os.path.getsize(paths["model"])
        plans = []
        for subject in ("restore", "checkpoint"):
            size = os.path.getsize(paths[subject])
            plans.append((subject, paths[subject], f"{subject}: every bit flip of {os.path.basename(paths[subject])} ({size} B)",
                          [["flip", bit] for bit in range(size * 8)]))
            plans.append((subject, paths[subject], f"{subject}: every truncation of {os.path.basename(paths[subject])}",
                          [["truncate", length] for length in range(size)]))
        plans.append(("model", paths["model"], f"model open, digest checked: every bit flip of tiny.tflite ({model_size} B)",
                      [["flip", bit] for bit in range(model_size * 8)]))
        plans.append(("model", paths["model"], "model open, digest checked: every 7th truncation",
                      [["truncate", length] for length in range(0, model_size, 7)]))
        plans.append(("unchecked", paths["model"], f"model open with verify_digest=False: {args.unchecked_samples} "
                      "seeded bit flips, then infer + train",
                      [["flip", rng.randrange(model_size * 8)] for _ in range(args.unchecked_samples)]))
        for subject, path, title, cases in plans:
            if args.only not in title:
                continue
            if args.max_cases is not None and len(cases) > args.max_cases:
                cases = rng.sample(cases, args.max_cases)
                title += f" (seeded sample of {args.max_cases})"
            print(f"{title}: {len(cases)} cases", flush=True)
            outcomes = run_cases(subject, paths["model"], path, cases, work_dir)
            report["campaigns"].append({"title": title, "cases": len(cases), "outcomes": dict(outcomes.most_common())})
            print(f"  {dict(outcomes.most_common(8))}", flush=True)
        for attack in attacks.ATTACKS:  # benchmarks/fuzz/attacks.py: one campaign each
            if args.only in attack.__name__.replace("_", " ") or args.only in "attack":
                print(f"attack: {attack.__name__}", flush=True)
                report["campaigns"].append(attack(paths["model"], Path(tempfile.mkdtemp(dir=work_dir))))
                print(f"  {report['campaigns'][-1]['outcomes']}", flush=True)
    report["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"fuzz-{report['when']}{'-' + args.label if args.label else ''}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [f"# Fuzz campaign {report['when']} (seed {args.seed}, {report['seconds']} s)", "",
             "Rerun: `python -m benchmarks.fuzz` (`--only attack` for the attacks of benchmarks/fuzz/attacks.py). "
             "ACCEPTED = a damaged file was used; RAW = an exception outside the project's error classes; ABORT = "
             "the process was killed (LiteRT); FAILED / STATE CHANGED = an attack that worked.", ""]
    for campaign in report["campaigns"]:
        lines += [f"## {campaign['title']}", "", f"{campaign['cases']} cases.", "", "| outcome | cases |", "|---|---|"]
        lines += [f"| {outcome} | {count} |" for outcome, count in campaign["outcomes"].items()] + [""]
        lines += [f"- {key.replace('_', ' ')}: {value}" for key, value in campaign.items()
                  if key in ("final_file", "leftover_temporaries")]
        lines += [f"- {run['file_mib']:,} MiB file, {run['fingerprint']}: {run['outcome']}; read "
                  f"{run.get('bytes_read', 0):,} bytes, {run.get('seconds')} s, peak {run.get('peak_mib')} MiB"
                  for run in campaign.get("runs", [])]
        lines += [f"- {case}: {outcome}" for case, outcome in campaign.get("per_case", {}).items()]
        lines += [f"- example of {outcome}: `{example}`" for outcome, example in campaign.get("examples", {}).items()]
        lines += [""] if any(key in campaign for key in ("runs", "per_case", "examples", "final_file")) else []
    stem.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {stem}.md")


if __name__ == "__main__":
    main()
