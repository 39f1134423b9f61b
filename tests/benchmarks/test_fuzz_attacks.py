"""benchmarks/fuzz/attacks.py, the hardening attacks python -m benchmarks.fuzz reports, at a small
size on the tiny model: every attack runs and none finds anything. (That they find what they
look for is in benchmarks/results/fuzz-*-before-attacks.md: the same attacks on the runtime before
these fixes, 78 of 200 concurrent saves failed, 14 long names, 1 GiB read, 13 raw errors.)"""

from __future__ import annotations

from benchmarks.fuzz import attacks


def findings(result: dict) -> dict:
    return {outcome: count for outcome, count in result["outcomes"].items()
            if outcome.startswith(("FAILED", "RAW", "ABORT")) or "STATE CHANGED" in outcome}


def test_the_attacks_find_nothing(tiny_model_path, tmp_path):
    def folder(name):
        (tmp_path / name).mkdir()
        return tmp_path / name

    results = [attacks.concurrent_saves(tiny_model_path, folder("saves"), processes=2, saves=10),
               attacks.long_names(tiny_model_path, folder("names")),
               attacks.oversized_checkpoints(tiny_model_path, folder("oversized"), sizes_mib=(4,)),
               attacks.api_numbers(tiny_model_path, folder("numbers"))]
    assert [(result["title"], findings(result)) for result in results] == [(result["title"], {}) for result in results]
    saves, names, oversized, numbers = results
    assert saves["outcomes"] == {"saved": 20} and saves["final_file"] == "reads back"
    assert names["outcomes"] == {"<= 255 bytes: saved and restored": 56, "256 bytes: refused: CheckpointError": 1}
    assert oversized["cases"] == 2 and all(run["bytes_read"] < 2**20 for run in oversized["runs"])
    assert numbers["cases"] == 17

