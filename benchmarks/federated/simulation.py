"""One federation, simulated: our ServerApp logic (`run_federation`: Flower's strategy or
SecAgg+ workflow, per-round checkpoints, traffic measured per node) and our ClientApp, with
N virtual SuperNodes whose data file is chosen by their partition id.

Two engines: `ray`, Flower's simulation engine (`flwr.simulation.run_simulation`, Ray
backend: what the SuperNodes would do happens in Ray workers), and `in-process`
(`runtime/federated/in_process.py`: the same Flower strategies and workflows over a Grid
that hands each message, through Flower's serde, to the ClientApp in this process, one device
after the other; no Ray, which on a loaded 2-core machine may not start). Nothing is mocked
in either."""

from __future__ import annotations

import logging
import os

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from tflite_transfer.runtime.federated.client_app import build_client_app
from tflite_transfer.runtime.federated.server_app import FederationResult, ServerSettings, run_federation


class DataForPartition:
    """Maps a virtual SuperNode to its model file and its samples (picklable for Ray)."""

    def __init__(self, model_path: str, data_dir: str):
        self.model_path, self.data_dir = model_path, data_dir

    def __call__(self, context: Context) -> tuple[str, str]:
        partition = int(context.node_config["partition-id"])
        return self.model_path, os.path.join(self.data_dir, f"client-{partition:03d}.npz")


def client_file(data_dir: str, index: int) -> str:
    return os.path.join(data_dir, f"client-{index:03d}.npz")


def simulate(settings: ServerSettings, data_dir: str, num_clients: int, workers: int,
             engine: str = "ray") -> FederationResult:
    if engine == "in-process":
        return simulate_in_process(settings, data_dir, num_clients)
    results: list[FederationResult] = []
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        results.append(run_federation(grid, context, settings, progress=lambda line: None))

    from flwr.simulation import run_simulation  # noqa: PLC0415 - imports Ray

    client_app = build_client_app(DataForPartition(settings.model, data_dir))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": workers, "include_dashboard": False,
                             "logging_level": logging.ERROR, "log_to_driver": False}}
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_clients,
                   backend_config=backend)
    if not results:
        raise SystemExit("the simulation ended without a result: see Flower's log above")
    return results[0]


def simulate_in_process(settings: ServerSettings, data_dir: str, num_clients: int) -> FederationResult:
    from flwr.app import RecordDict  # noqa: PLC0415

    from tflite_transfer.runtime.federated.in_process import InProcessGrid, ServerIdentity  # noqa: PLC0415

    client_app = build_client_app(DataForPartition(settings.model, data_dir))
    # Node IDs as a SuperLink hands them out (any distinct non-zero integers).
    grid = InProcessGrid(client_app, {1000 + index: {"partition-id": index} for index in range(num_clients)},
                         keep=False)
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    with ServerIdentity():
        return run_federation(grid, context, settings, progress=lambda line: None)
