"""One federation on Flower's simulation engine (`flwr.simulation.run_simulation`, Ray
backend): our ServerApp logic (`run_federation`: Flower's strategy, per-round checkpoints,
traffic measured per node) and our ClientApp, with N virtual SuperNodes whose data file is
chosen by their partition id. Everything the SuperNodes would do in a deployment happens
here in Ray workers; nothing is mocked."""

from __future__ import annotations

import logging
import os

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

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


def simulate(settings: ServerSettings, data_dir: str, num_clients: int, workers: int) -> FederationResult:
    results: list[FederationResult] = []
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        results.append(run_federation(grid, context, settings, progress=lambda line: None))

    client_app = build_client_app(DataForPartition(settings.model, data_dir))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": workers, "include_dashboard": False,
                             "logging_level": logging.ERROR, "log_to_driver": False}}
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_clients,
                   backend_config=backend)
    if not results:
        raise SystemExit("the simulation ended without a result: see Flower's log above")
    return results[0]
