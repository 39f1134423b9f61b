"""The interleaved sweep: long-lived worker processes (ours and each peer), driven in
alternating blocks of the same row, a ratio per pair of blocks, the median ratio and its spread.

Machine drift (other processes, frequency, cache state) lands on both sides of a pair alike,
so the ratio is robust where separate runs at different moments are not. The order within a
pair flips every round (A B, B A, ...) so neither side always runs right after the other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import numpy as np

WORKERS_DIR = Path(__file__).parent / "workers"
WIDE_SPREAD = 0.25          # IQR / median of the ratios above this marks a row as noisy


class Worker:
    """One worker script in a python (its venv), speaking workers/protocol.py's line protocol."""

    def __init__(self, name: str, script: str, python: str, env: dict | None = None):
        self.name = name
        environment = {**(env or os.environ), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen([python, str(WORKERS_DIR / script)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env=environment, cwd=str(WORKERS_DIR))

    def request(self, **message) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            return {"error": f"{self.name} worker exited (code {self.process.poll()})"}
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


@dataclasses.dataclass(frozen=True)
class RowResult:
    """One head x optimizer x batch against one peer."""
    head: str
    optimizer: str
    batch: int
    peer: str
    ours_us: list[float]            # per-block medians, in round order
    peer_us: list[float]
    ratios: list[float]             # ours / peer per round
    error: str | None = None

    @property
    def ratio(self) -> float:
        return float(np.median(self.ratios)) if self.ratios else float("nan")

    @property
    def ratio_iqr(self) -> tuple[float, float]:
        if not self.ratios:
            return (float("nan"), float("nan"))
        low, high = np.percentile(self.ratios, [25, 75])
        return float(low), float(high)

    @property
    def wide(self) -> bool:
        low, high = self.ratio_iqr
        return bool(self.ratios) and (high - low) / self.ratio > WIDE_SPREAD

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "ratio_iqr": list(self.ratio_iqr),
                "wide_spread": self.wide,
                "ours_median_us": float(np.median(self.ours_us)) if self.ours_us else None,
                "peer_median_us": float(np.median(self.peer_us)) if self.peer_us else None}


def run_row(ours: Worker, peer: Worker, key: str, batch: int, rounds: int, budget_ms: float,
            min_calls: int, head: str, optimizer: str) -> RowResult:
    ours_us, peer_us, ratios = [], [], []
    for round_index in range(rounds):
        pair = (ours, peer) if round_index % 2 == 0 else (peer, ours)
        replies = {}
        for worker in pair:
            replies[worker.name] = worker.request(cmd="time", key=key, batch=batch, budget_ms=budget_ms,
                                                  min_calls=min_calls)
        errors = [f"{name}: {r['error']}" for name, r in replies.items() if "error" in r]
        if errors:
            return RowResult(head, optimizer, batch, peer.name, ours_us, peer_us, ratios, "; ".join(errors))
        ours_us.append(replies[ours.name]["median_us"])
        peer_us.append(replies[peer.name]["median_us"])
        ratios.append(ours_us[-1] / peer_us[-1])
    return RowResult(head, optimizer, batch, peer.name, ours_us, peer_us, ratios)
