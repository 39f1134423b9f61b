"""The peers' venvs for the speed sweep (built and cached by benchmarks/common/venvs.py)."""

from __future__ import annotations

from benchmarks.common.venvs import ORT_ENV, VenvSpec

# ExecuTorch 1.5.1 works with torch 2.13.0; pinning torch in the same step keeps pip from
# replacing it (a looser pin pulls gigabytes of CUDA wheels).
EXECUTORCH_ENV = VenvSpec(
    name="executorch-1.5.1",
    install_steps=(("torch==2.13.0",), ("executorch==1.5.1", "torch==2.13.0")),
    probe="import executorch, torch, numpy, json; from importlib.metadata import version; "
          "print(json.dumps({'executorch': version('executorch'), 'torch': torch.__version__, "
          "'numpy': numpy.__version__}))",
)

PEERS = {"ort": (ORT_ENV, "ort_worker.py", "ORT training"),
         "executorch": (EXECUTORCH_ENV, "executorch_worker.py", "ExecuTorch")}
