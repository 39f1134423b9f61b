"""Training-speed sweep: our `train` step against ONNX Runtime training and ExecuTorch,
interleaved, at real head sizes, and against the physical limit.

NAME
    python -m benchmarks.speed - ratio of our train step to the peers' at 4 to 1,000 classes

SYNOPSIS
    python -m benchmarks.speed [--rounds 15] [--block_ms 25] [--peers ort,executorch]
        [--baseline OLD.json] [--profile] [--results_dir benchmarks/results] [--quick]

DESCRIPTION
    Compiles our model for every head (1280->4, 1280->100, 1280->1000, mlp:256->100) and
    optimizer (SGD, Adam), then starts one long-lived worker per runtime: ours (numpy +
    ai-edge-litert, 1 thread, default XNNPACK), ONNX Runtime training 1.19.2 and ExecuTorch
    1.5.1 (SGD only), each in its own venv (created on first use under
    $TFLITE_TRANSFER_BENCH_CACHE). Every peer starts from our compiled initial weights and
    trains on the same bottlenecks and labels. For each head x optimizer x batch (1, 8, 32) the
    driver alternates blocks of --block_ms of steps between ours and the peer (A B, B A, ...)
    for --rounds rounds; a block's figure is its median step, a round's ratio ours / peer.
    Reported: the median ratio and its IQR (rows whose IQR exceeds 25 % of the median are
    marked), our step against max(bytes to move / copy bandwidth, flops / matmul rate) measured
    in the same run, and with --baseline a before/after table against an earlier sweep's JSON.
    --profile adds the op-level profile of `train` at 1000 classes (benchmarks/speed/profile.py,
    needs Linux `perf`). Writes <results_dir>/speed-sweep-<UTC>.json, .md and .png.
    No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import venvs  # noqa: E402
from benchmarks.common.report import Measurement, machine_facts, write_report  # noqa: E402
from benchmarks.speed import bound, render, subjects  # noqa: E402
from benchmarks.speed.envs import PEERS  # noqa: E402
from benchmarks.speed.sweep import Worker, run_row  # noqa: E402

TITLE = "speed sweep"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="A/B rounds per row (default 15)")
    parser.add_argument("--block_ms", type=float, default=25.0, help="time of one block of steps (default 25 ms)")
    parser.add_argument("--min_calls", type=int, default=5, help="fewest steps in a block (default 5)")
    parser.add_argument("--peers", default="ort,executorch", help="comma list of: " + ", ".join(PEERS))
    parser.add_argument("--baseline", help="an earlier sweep's JSON: adds a before/after table")
    parser.add_argument("--profile", action="store_true", help="add the op profile of train at 1000 classes")
    parser.add_argument("--results_dir", default=str(Path(__file__).resolve().parents[1] / "results"))
    parser.add_argument("--quick", action="store_true", help="3 rounds of 10 ms: a smoke run")
    parser.add_argument("--label", default="", help="a note on what this run measures (e.g. 'before')")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.block_ms = 3, 10.0
    unknown = set(args.peers.split(",")) - set(PEERS) - {""}
    if unknown:
        parser.error(f"unknown peer(s) {sorted(unknown)}; choose from {', '.join(PEERS)}")
    if args.baseline:
        try:
            json.loads(Path(args.baseline).read_text())["summary"]["rows"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--baseline {args.baseline}: not a speed-sweep JSON report ({error}); "
                         "give a speed-sweep-*.json from benchmarks/results/")
    start = time.perf_counter()
    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-speed-") as workdir:
        document = run_sweep(Path(workdir), args, machine)
    document["notes"].append(f"sweep took {time.perf_counter() - start:.0f} s; load average at end "
                             + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    paths = write(document, args, machine)
    for path in paths:
        print(path)
    return 0


def run_sweep(workdir: Path, args, machine: dict) -> dict:
    print("compiling our models")
    built = subjects.build_subjects(workdir)
    inputs = subjects.write_inputs(workdir / "inputs", tuple(c for _, _, c in subjects.HEADS))
    workers, notes, versions = {}, [], {}
    workers["ours"] = Worker("ours", "litert_worker.py", sys.executable)
    for peer in [p for p in args.peers.split(",") if p]:
        spec, script, name = PEERS[peer]
        print(f"preparing {name} venv")
        ready = venvs.ensure_venv(spec)
        if ready.python is None:
            notes.append(f"{name} not measured: {ready.error}")
            continue
        versions[name] = ready.versions
        workers[name] = Worker(name, script, ready.python, ready.environ())
    try:
        loaded = {}
        for subject in built:
            for name, worker in workers.items():
                if name == "ExecuTorch" and subject.optimizer != "sgd":
                    continue
                request = ({"model": subject.model_path, "inputs": inputs} if name == "ours" else
                           {**subject.peer_request(inputs), "workdir": str(workdir / name / subject.key.replace("|", "_"))})
                reply = workers[name].request(cmd="load", key=subject.key, **request)
                loaded[(name, subject.key)] = reply
                if "error" in reply:
                    notes.append(f"{name} could not build {subject.key}: {reply['error']}")
        costs = {(s.key, b): bound.step_cost(s.layers, s.optimizer, b) for s in built for b in subjects.BATCHES}
        probe = {"cmd": "load", "key": "machine", "probe": "machine", "copy_bytes": bound.copy_sizes(costs.values())}
        machine_before = workers["ours"].request(**probe)
        rows = []
        for subject in built:
            for batch in subjects.BATCHES:
                for name, worker in workers.items():
                    if name == "ours" or "error" in loaded.get((name, subject.key), {"error": 1}):
                        continue
                    print(f"  {subject.key} batch {batch} vs {name}")
                    rows.append(run_row(workers["ours"], worker, subject.key, batch, args.rounds, args.block_ms,
                                        args.min_calls, subject.head_label, subject.optimizer).to_json())
        machine_after = workers["ours"].request(**probe)
    finally:
        for worker in workers.values():
            worker.close()
    measured = _best_of(machine_before, machine_after)
    bounds = _bounds(built, rows, costs, measured)
    runtimes = {name: reply.get("runtime") for (name, _), reply in loaded.items() if "runtime" in reply}
    profile = None
    if args.profile:
        from benchmarks.speed import profile as op_profile  # noqa: PLC0415
        profile = op_profile.profile_models(
            {s.optimizer: s.model_path for s in built if s.head_label == "1280->1000"}, inputs, batches=(1, 32))
    return {"rows": rows, "bounds": bounds, "machine_measured": measured, "runtimes": runtimes,
            "peer_versions": versions, "notes": notes, "profile": profile,
            "settings": {"rounds": args.rounds, "block_ms": args.block_ms, "min_calls": args.min_calls,
                         "learning_rate": subjects.LEARNING_RATE, "label": args.label}}


def _best_of(*probes: dict) -> dict:
    usable = [p for p in probes if "copy_bandwidth_bytes_per_s" in p]
    if not usable:
        raise RuntimeError(f"the machine probe failed: {probes}")
    sizes = usable[0]["copy_bandwidth_bytes_per_s"]
    return {"copy_bandwidth_bytes_per_s": {s: max(p["copy_bandwidth_bytes_per_s"][s] for p in usable) for s in sizes},
            "matmul_flops_per_s": max(p["matmul_flops_per_s"] for p in usable)}


def _bounds(built, rows, costs, measured) -> list[dict]:
    ours = {}
    for row in rows:
        ours.setdefault((f"{row['head']}|{row['optimizer']}", row["batch"]), []).extend(row["ours_us"])
    result = []
    for subject in built:
        for batch in subjects.BATCHES:
            times = ours.get((subject.key, batch))
            if not times:
                continue
            cost = costs[(subject.key, batch)]
            bandwidth = bound.bandwidth_for(cost, measured["copy_bandwidth_bytes_per_s"])
            dram = measured["copy_bandwidth_bytes_per_s"][str(bound.DRAM_COPY_BYTES)]
            ours_us = sorted(times)[len(times) // 2]
            memory_us = 1e6 * cost.traffic_bytes / bandwidth
            compute_us = 1e6 * cost.flops / measured["matmul_flops_per_s"]
            result.append({"head": subject.head_label, "optimizer": subject.optimizer, "batch": batch,
                           "ours_us": ours_us, "traffic_bytes": cost.traffic_bytes, "flops": cost.flops,
                           "working_set_bytes": cost.working_set_bytes, "bandwidth_bytes_per_s": bandwidth,
                           "memory_bound_us": memory_us, "dram_bound_us": 1e6 * cost.traffic_bytes / dram,
                           "compute_bound_us": compute_us,
                           "ours_over_bound": ours_us / max(memory_us, compute_us)})
    return result


def write(document: dict, args, machine: dict) -> list[Path]:
    heads = [label for label, _, _ in subjects.HEADS]
    rows, bounds = document["rows"], document["bounds"]
    sections = [render.ratio_table(rows, "ORT training", heads, subjects.OPTIMIZERS, subjects.BATCHES),
                render.ratio_table(rows, "ExecuTorch", heads, subjects.OPTIMIZERS, subjects.BATCHES),
                render.bound_table(bounds)]
    if args.baseline:
        before = json.loads(Path(args.baseline).read_text())["summary"]["rows"]
        sections.insert(1, render.before_after_table(before, rows, "ORT training", subjects.BATCHES))
    if document["profile"]:
        from benchmarks.speed import profile as op_profile  # noqa: PLC0415
        sections.append(op_profile.render(document["profile"]))
    measured = document["machine_measured"]
    bandwidth = ", ".join(f"{int(s) / 2**20:.1f} MiB: {v / 1e9:.0f} GB/s"
                          for s, v in sorted(measured["copy_bandwidth_bytes_per_s"].items(), key=lambda kv: int(kv[0])))
    notes = [f"Settings: {document['settings']}.",
             f"Copy bandwidth (bytes read + written per s, 1 thread, numpy copy of one array of each size, "
             f"best of repeats): {bandwidth}. Matmul rate (numpy BLAS, 1 thread): "
             f"{measured['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s (numpy's BLAS at 512x1280x1000, not the "
             "core's peak: a row under 1 means XNNPACK's gemm beat that rate, so the arithmetic bound is "
             "loose there; the memory bound is the one the issue asks for).",
             "ORT's optimizers are single fused kernels (com.microsoft SGDOptimizerV2, AdamWOptimizer in "
             "optimizer_model.onnx): one pass over W, G and the slots. TFLite builtins have no such op: each "
             "elementwise op is a full pass, and READ_VARIABLE / ASSIGN_VARIABLE copy the whole tensor.",
             f"Bytes a step must move: {bound.PASSES['sgd'][0]} |W| for SGD ({bound.PASSES['sgd'][1]}), "
             f"{bound.PASSES['adam'][0]} |W| for Adam ({bound.PASSES['adam'][1]}); see benchmarks/speed/bound.py.",
             f"Runtimes: {document['runtimes'] and sorted(set(document['runtimes'].values()))}; peer venvs: "
             f"{document['peer_versions']}.",
             "ORT's Adam is its AdamW with weight decay 0 (ORT 1.19 has no plain Adam); ExecuTorch 1.5.1 has "
             "SGD only.", *document["notes"]]
    measurements = []
    for row in rows:
        for side, times, runtime in (("ours", row["ours_us"], "ai-edge-litert"), (row["peer"], row["peer_us"], row["peer"])):
            if not times:
                continue
            measurements.append(Measurement(
                scenario=f"{side} ({row['optimizer']}) {row['head']}" + ("" if side != "ours" else f" vs {row['peer']}"),
                signature="train", runtime=runtime, device="host", threads=1,
                delegate="xnnpack" if side == "ours" else "n/a", batch=row["batch"], runs=len(times),
                median_us=float(sorted(times)[len(times) // 2]), min_us=min(times), max_us=max(times),
                peak_memory_mib=None, extra={"per_block_median_us": times}))
    summary = {k: document[k] for k in ("rows", "bounds", "machine_measured", "runtimes", "peer_versions",
                                        "settings", "profile")}
    json_path, markdown_path = write_report(args.results_dir, TITLE, measurements, machine, notes,
                                            summary=summary, sections=[s for s in sections if s])
    png = render.write_plot(rows, bounds, heads, json_path.with_suffix(".png"))
    with markdown_path.open("a", encoding="utf-8") as markdown:
        markdown.write(f"\n![ratio vs head size]({png.name})\n")
    return [json_path, markdown_path, png]


if __name__ == "__main__":
    sys.exit(main())
