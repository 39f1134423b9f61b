"""A real federation on 127.0.0.1, secured as a deployment should be: Flower's SuperLink and
SuperNodes as separate processes over TLS (a private CA made for this run: the SuperLink's
Fleet/Control/Runtime API, each SuperNode's own Runtime API and `flwr` all verify the server
certificate; nothing runs `--insecure`), with SuperNode authentication (`--enable-supernode-
auth`: each device's public key registered with `flwr supernode register` first).

Three registered devices: two hold the federation's model, the third another compiled model
(same shapes, other fingerprint) and must be refused. A fourth SuperNode with a key nobody
registered must be turned away by the SuperLink (Flower's "Failed to activate SuperNode") and
never appear in a round. After two FedAvg rounds the global checkpoint must restore in
Python, its `infer` must agree with what the server scored, and the global loss must have
gone down. (DP and SecAgg+ run through Flower's own strategies and workflows in
test_federated_privacy.py, in one process: a SecAgg+ round here would double the runtime.)

Every process is started in its own session with the default SIGINT handler (so nothing
depends on how pytest was started) and stopped by its PID (its process group) in a
`finally`; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import colour_images
from tests.runtime.federated.credentials import make_node_keys, make_tls_files
import tflite_transfer.runtime as runtime_package
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
    children, flower-superexec, flwr-serverapp and flwr-clientapp, by name from PATH), checked
    to run the tflite-transfer under test: scripts of another Python would run another tree's
    ServerApp and ClientApp and test that instead."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / "flower-superlink").is_file():
            break
    else:
        found = shutil.which("flower-superlink")
        if found is None:
            raise RuntimeError("flower-superlink is not on PATH: pip install -e '.[test]' (flwr==1.42.0)")
        folder = Path(found).parent
    shebang = (folder / "flower-superlink").read_text(errors="replace").splitlines()[0]
    interpreter = shebang[2:].split() if shebang.startswith("#!") else [sys.executable]
    probe = subprocess.run([*interpreter, "-c", "import importlib.util as u; "
                            "print(u.find_spec('tflite_transfer.runtime').origin)"],
                           capture_output=True, text=True, timeout=60)
    theirs = probe.stdout.strip()
    if not theirs or Path(theirs).resolve() != Path(runtime_package.__file__).resolve():
        raise RuntimeError(f"the Flower scripts in {folder} import tflite_transfer.runtime from {theirs or '?'}, "
                           f"this test from {runtime_package.__file__}: install flwr==1.42.0 into this "
                           "environment (pip install --no-deps --force-reinstall flwr==1.42.0)")
    return folder


BIN = flower_scripts()
ROUNDS = 2
START_TIMEOUT = 90.0      # seconds for a process to open its port (2 busy cores)
RUN_TIMEOUT = 900.0       # seconds for `flwr run` of the whole federation
CLI_TIMEOUT = 120.0       # seconds for one `flwr supernode register`


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
        with log.open("w") as output:
            process = subprocess.Popen([str(BIN / arguments[0]), *arguments[1:]], env=self.environment,
                                       stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=default_signal_handlers)
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


def default_signal_handlers() -> None:
    """In the child before exec: SIGINT back to its default (a suite started as a background
    job inherits it ignored; Flower's SuperNode stops itself with SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def flwr_cli(environment: dict, *arguments: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "flwr"), *arguments], env=environment, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=default_signal_handlers)


def register(environment: dict, workdir: Path, public_keys: list[Path]) -> list[int]:
    """`flwr supernode register` over TLS, all keys at once; the node IDs the SuperLink gives."""
    outputs = [workdir / f"register-{index}.log" for index in range(len(public_keys))]
    registering = []
    try:
        for key, output in zip(public_keys, outputs):
            with output.open("w") as handle:
                registering.append(subprocess.Popen(
                    [str(BIN / "flwr"), "supernode", "register", str(key), "test", "--format", "json"],
                    env=environment, stdout=handle, stderr=subprocess.STDOUT, preexec_fn=default_signal_handlers))
        codes = [process.wait(timeout=CLI_TIMEOUT) for process in registering]
    finally:
        for process in registering:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    texts = [output.read_text() for output in outputs]
    assert codes == [0] * len(public_keys), texts
    return [int(json.loads(text[text.index("{"):])["node-id"]) for text in texts]


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

    tls = make_tls_files(workdir / "tls")
    keys = [make_node_keys(node_dir, "device-key") for node_dir in nodes]
    intruder_keys = make_node_keys(workdir / "intruder", "device-key")     # never registered
    environment = {**os.environ, "FLWR_HOME": str(workdir / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0",
                   "FLWR_DISABLE_UPDATE_CHECK": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    link_port, *node_ports = free_ports(2 + len(nodes))
    (workdir / "flwr-home").mkdir()
    # TLS for `flwr` itself: the connection trusts our CA (no `insecure` key at all).
    (workdir / "flwr-home" / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{link_port}"\n'
        f'root-certificates = "{tls.ca_certificate}"\n')
    runtime_tls = ("--ssl-certfile", str(tls.server_certificate), "--ssl-keyfile", str(tls.server_key),
                   "--ssl-ca-certfile", str(tls.ca_certificate))
    processes = Processes(workdir, environment)
    try:
        link, link_log = processes.start("superlink", "flower-superlink", "--host", "127.0.0.1", "--port",
                                         str(link_port), *runtime_tls, "--enable-supernode-auth",
                                         "--disable-runtime-dependency-installation")
        wait_for_port(link_port, link, link_log)
        node_ids = register(environment, workdir, [node_keys.public_key for node_keys in keys])

        def start_node(name: str, private_key: Path, port: int, node_config: str) -> tuple:
            return processes.start(
                name, "flower-supernode", "--superlink", f"127.0.0.1:{link_port}",
                "--root-certificates", str(tls.ca_certificate), "--auth-supernode-private-key", str(private_key),
                "--host", "127.0.0.1", "--port", str(port), *runtime_tls, "--max-wait-time", "120",
                "--node-config", node_config)

        # All four start at once (their imports overlap); then each must open its port.
        intruder, intruder_log = start_node("intruder", intruder_keys.private_key, node_ports[-1],
                                            f'model="{nodes[0] / "model.tflite"}" data="{nodes[0] / "samples.npz"}"')
        started = [start_node(f"supernode{index}", node_keys.private_key, port,
                              f'model="{node_dir / "model.tflite"}" data="{node_dir / "samples.npz"}"')
                   for index, (node_dir, node_keys, port) in enumerate(zip(nodes, keys, node_ports))]
        for (node, node_log), port in zip(started, node_ports):
            wait_for_port(port, node, node_log)
        intruder.wait(timeout=START_TIMEOUT)          # refused at once: nothing to retry
        run_config = (f'model="{server_dir / "model.tflite"}" checkpoint-dir="{server_dir / "checkpoints"}" '
                      f'heldout="{server_dir / "heldout.npz"}" num-rounds={ROUNDS} local-epochs=5 '
                      'batch-size=8 learning-rate=1.0 min-nodes=3 round-timeout=600.0')
        run = flwr_cli(environment, "run", str(APP), "test", "--run-config", run_config, "--stream",
                       timeout=RUN_TIMEOUT)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        yield {"server_dir": server_dir, "nodes": nodes, "images": images, "labels": labels, "log": run.stdout,
               "node_ids": node_ids, "intruder": intruder, "intruder_log": workdir / "intruder.log",
               "intruder_key": intruder_keys.public_key, "link_log": link_log, "link_port": link_port, "tls": tls}
    finally:
        processes.stop_all()
    assert all(process.returncode is not None for process in processes.started)


def test_the_superlink_serves_tls_with_the_private_cas_certificate(federation):
    """TLS is on: our CA verifies the SuperLink for 127.0.0.1; the system's trust store does not."""
    trusted = ssl.create_default_context(cafile=str(federation["tls"].ca_certificate))
    with socket.create_connection(("127.0.0.1", federation["link_port"]), timeout=30) as raw:
        with trusted.wrap_socket(raw, server_hostname="127.0.0.1") as secured:
            subject = dict(item[0] for item in secured.getpeercert()["subject"])
            assert subject["commonName"] == "127.0.0.1" and secured.version().startswith("TLS")
    with socket.create_connection(("127.0.0.1", federation["link_port"]), timeout=30) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_an_unregistered_supernode_is_refused(federation):
    """The SuperNode with an unknown key exits with Flower's refusal; the SuperLink logged
    the refusal of that very key, and no round ever reached or heard from it."""
    intruder_log = federation["intruder_log"].read_text()
    assert federation["intruder"].returncode != 0, intruder_log[-2000:]
    assert "Failed to activate SuperNode" in intruder_log and "[code: 2004]" in intruder_log, intruder_log[-2000:]
    link_log = federation["link_log"].read_text()
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    pem = serialization.load_ssh_public_key(federation["intruder_key"].read_bytes()).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    refusals = [line for line in link_log.splitlines() if "ApiError:2004" in line]
    assert any(pem.splitlines()[1] in line and "No SuperNode found with the given public key" in line
               for line in refusals), refusals
    record = json.loads((federation["server_dir"] / "checkpoints" / "federation.json").read_text())
    registered = {str(node_id) for node_id in federation["node_ids"]}
    for server_round in record["rounds"][1:]:
        assert set(server_round["bytes_sent"]) == set(server_round["bytes_received"]) == registered


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

