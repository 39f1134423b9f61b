"""A real federation on 127.0.0.1: Flower's SuperLink and three SuperNodes as separate
processes, each node with its own copy of the compiled model, `flwr run` submitting our
Flower App. Two nodes hold the federation's model; the third holds another compiled model
(same shapes, other fingerprint) and must be refused. After two FedAvg rounds the global
checkpoint must restore in Python, its `infer` must agree with what the server scored, and
the global loss must have gone down. Every process is started in its own session and
stopped by its PID (its process group) at the end; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import colour_images
from tflite_transfer.runtime import CheckpointError, TransferModel
from tflite_transfer.runtime.federated import head
from tflite_transfer.runtime.federated.client_data import ClientData

try:
    import flwr  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise RuntimeError("flwr is not installed: pip install -e '.[test]' (flwr==1.42.0)") from None
    from tflite_transfer.runtime.installation import install_command

    pytest.skip(f"flwr not installed ({install_command('federated')})", allow_module_level=True)

APP = Path(__file__).resolve().parents[3] / "runtime" / "federated" / "app"


def flower_scripts() -> Path:
    """Where pip put flower-superlink & co. (the SuperLink and SuperNodes start their own
    children, flower-superexec and flwr-clientapp, by name from PATH)."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / "flower-superlink").is_file():
            return folder
    found = shutil.which("flower-superlink")
    if found is None:
        raise RuntimeError("flower-superlink is not on PATH: pip install -e '.[test]' (flwr==1.42.0)")
    return Path(found).parent


BIN = flower_scripts()
ROUNDS = 2
START_TIMEOUT = 90.0      # seconds for a process to open its port (2 busy cores)
RUN_TIMEOUT = 900.0       # seconds for `flwr run` of the whole federation


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT} s: {log.read_text()[-2000:]}")


class Processes:
    """Started in their own sessions so each one's children (SuperExec, ClientApps) go with it."""

    def __init__(self, workdir: Path, environment: dict):
        self.workdir, self.environment, self.started = workdir, environment, []

    def start(self, name: str, *arguments: str) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{name}.log"
        process = subprocess.Popen([str(BIN / arguments[0]), *arguments[1:]], env=self.environment,
                                   stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(process)
        return process, log

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.started:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)      # the group: leftover children too
            except ProcessLookupError:
                pass
            process.wait(timeout=10)


def node_data(model_path: str, seed: int) -> ClientData:
    model = TransferModel.open(model_path)
    images, labels = colour_images(12, seed=seed)
    bottlenecks = model.load(images)
    return ClientData(bottlenecks[:24], labels[:24], bottlenecks[24:], labels[24:])


@pytest.fixture(scope="module")
def federation(tiny_model_path, other_model_path, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("federation")
    nodes = []
    for index, model in enumerate((tiny_model_path, tiny_model_path, other_model_path)):
        node_dir = workdir / f"device{index}"          # each device: its own model copy and samples
        node_dir.mkdir()
        shutil.copyfile(model, node_dir / "model.tflite")
        node_data(str(node_dir / "model.tflite"), seed=index).save(node_dir / "samples.npz")
        nodes.append(node_dir)
    server_dir = workdir / "server"
    server_dir.mkdir()
    shutil.copyfile(tiny_model_path, server_dir / "model.tflite")
    images, labels = colour_images(10, seed=99)
    heldout_bottlenecks = TransferModel.open(tiny_model_path).load(images)
    ClientData(heldout_bottlenecks[:0], labels[:0], heldout_bottlenecks, labels).save(server_dir / "heldout.npz")

    environment = {**os.environ, "FLWR_HOME": str(workdir / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0",
                   "FLWR_DISABLE_UPDATE_CHECK": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    link_port, *node_ports = free_ports(1 + len(nodes))
    (workdir / "flwr-home").mkdir()
    (workdir / "flwr-home" / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n')
    processes = Processes(workdir, environment)
    try:
        link, link_log = processes.start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1",
                                         "--port", str(link_port), "--disable-runtime-dependency-installation")
        wait_for_port(link_port, link, link_log)
        for index, (node_dir, port) in enumerate(zip(nodes, node_ports)):
            node, node_log = processes.start(
                f"supernode{index}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                "--host", "127.0.0.1", "--port", str(port), "--max-wait-time", "120", "--node-config",
                f'model="{node_dir / "model.tflite"}" data="{node_dir / "samples.npz"}"')
            wait_for_port(port, node, node_log)
        run_config = (f'model="{server_dir / "model.tflite"}" checkpoint-dir="{server_dir / "checkpoints"}" '
                      f'heldout="{server_dir / "heldout.npz"}" num-rounds={ROUNDS} local-epochs=5 '
                      'batch-size=8 learning-rate=1.0 min-nodes=3 round-timeout=600.0')
        run = subprocess.run([str(BIN / "flwr"), "run", str(APP), "test", "--run-config", run_config, "--stream"],
                             env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        yield {"server_dir": server_dir, "nodes": nodes, "images": images, "labels": labels,
               "log": run.stdout}
    finally:
        processes.stop_all()
    assert all(process.returncode is not None for process in processes.started)


def test_rounds_ran_and_the_other_model_was_refused(federation):
    record = json.loads((federation["server_dir"] / "checkpoints" / "federation.json").read_text())
    assert [r["server_round"] for r in record["rounds"]] == list(range(ROUNDS + 1))
    refusals = record["refusals"]
    assert {r["message_type"] for r in refusals} == {"train", "evaluate"} and len(refusals) == 2 * ROUNDS
    assert len({r["node_id"] for r in refusals}) == 1
    assert all("InvalidInputError" in r["reason"] and "fingerprint" in r["reason"] for r in refusals)
    for server_round in record["rounds"][1:]:
        sent, received = server_round["bytes_sent"], server_round["bytes_received"]
        assert len(sent) == 3 and len(received) == 3 and min(sent.values()) > 0
    # Only the two nodes with the federation's model were averaged and scored.
    assert set(record["evaluate_metrics"]) == {str(r) for r in range(1, ROUNDS + 1)}


def test_the_global_loss_went_down(federation):
    record = json.loads((federation["server_dir"] / "checkpoints" / "federation.json").read_text())
    losses = [r["server_metrics"]["global-loss"] for r in record["rounds"]]
    assert losses[-1] < 0.9 * losses[0], losses


def test_the_global_checkpoint_restores_and_infer_agrees(federation):
    """A device restores the global head; `infer` on the held-out images (the real graph) must
    give the accuracy the server computed from bottlenecks."""
    checkpoints = federation["server_dir"] / "checkpoints"
    record = json.loads((checkpoints / "federation.json").read_text())
    device = TransferModel.open(str(federation["nodes"][0] / "model.tflite"))
    initial = head.head_weights(device)
    device.restore_checkpoint(checkpoints / "global.ckpt")
    restored = head.head_weights(device)
    assert any(not np.array_equal(restored[name], initial[name]) for name in initial)
    probabilities = device.predict(federation["images"])
    accuracy = float(np.mean(probabilities.argmax(1) == federation["labels"]))
    assert accuracy == pytest.approx(record["rounds"][-1]["server_metrics"]["global-accuracy"])
    other = TransferModel.open(str(federation["nodes"][2] / "model.tflite"))
    with pytest.raises(CheckpointError, match="another model"):
        other.restore_checkpoint(checkpoints / "global.ckpt")
