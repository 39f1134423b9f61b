"""The federated benchmark's report: JSON (everything), Markdown (the tables), PNG (global
accuracy vs round, with the local-only and centralized levels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import report as common_report
from tflite_transfer.runtime.checkpoint import read_checkpoint
from tflite_transfer.runtime.federated import head


def federation_summary(federation, model, clients, feats, own_accuracy) -> dict:
    """Per-round figures of one simulated federation, and checks of its final checkpoint."""
    rows = []
    for record in federation.rounds:
        sent, received = list(record.bytes_sent.values()), list(record.bytes_received.values())
        evaluate = federation.evaluate_metrics.get(record.server_round, {})
        train = federation.train_metrics.get(record.server_round, {})
        rows.append({
            "round": record.server_round, "seconds": round(record.seconds, 3),
            "global_accuracy": record.server_metrics["global-accuracy"],
            "global_loss": record.server_metrics["global-loss"],
            "clients_own_accuracy": evaluate.get("eval-accuracy"), "train_loss": train.get("train-loss"),
            "bytes_sent_per_client": _spread(sent), "bytes_received_per_client": _spread(received),
            "clients_reached": len(sent)})
    final = read_checkpoint(federation.rounds[-1].checkpoint)
    weights = {name: final.tensors[name] for name in head.head_weights(model)}
    model.reset()
    model.restore_checkpoint(federation.rounds[-1].checkpoint)
    checked = slice(0, min(300, len(feats.test_label)))
    from benchmarks.accuracy import fashion_mnist  # noqa: PLC0415

    images = fashion_mnist.to_base_images(feats.test_images[checked], _image_size(model))
    infer = model.predict(images).argmax(1)
    from_head = head.head_logits(head.typed_metadata(model), weights, feats.test_bottleneck[checked]).argmax(1)
    return {"rounds": rows, "refusals": len(federation.refusals),
            "final_clients_own_accuracy": _spread(own_accuracy(model, weights, clients)),
            "infer_agrees_with_server_scoring": float(np.mean(infer == from_head))}


def _image_size(model) -> int:
    return int(model.image_shape[0])


def _spread(values) -> dict | None:
    if not len(values):
        return None
    array = np.asarray(values, np.float64)
    return {"mean": float(array.mean()), "std": float(array.std()), "min": float(array.min()),
            "max": float(array.max())}


def write(results_dir, settings: dict, outcome: dict, progress=print) -> dict[str, Path]:
    """federated-<UTC>.json (every figure), .md and .png, through benchmarks/common/report.py."""
    paths = common_report.result_paths(results_dir, "federated", ("json", "md", "png"))
    machine = common_report.machine_facts(("flwr", "ray", "ai-edge-litert", "tensorflow-cpu", "numpy"))
    _plot(paths["png"], settings, outcome)
    common_report.write_document(paths, {"settings": settings, "machine": machine, **outcome},
                                 _markdown(settings, machine, outcome, paths["png"].name))
    for path in paths.values():
        progress(f"wrote {path}")
    return paths


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _markdown(settings: dict, machine: dict, outcome: dict, plot_name: str) -> str:
    s = settings
    lines = [
        "# Federated personalization on Flower (simulation)", "",
        f"{s['clients']} clients, k = {s['k']} training images each (+{s['heldout']} held out), "
        f"{s['rounds']} rounds x {s['local_epochs']} local epochs (batch {s['batch_size']}, SGD lr "
        f"{s['learning_rate']}), Fashion-MNIST through {outcome['base']} "
        f"({s['image_size']}x{s['image_size']}). Label-skewed: {s['classes_per_client']} classes per client. "
        f"Global held-out set: {s['test_per_class']} test images per class. Flower {machine.get('flwr')} "
        + (f"simulation engine (Ray {machine.get('ray')}), {s['workers']} workers" if s.get("engine", "ray") == "ray"
           else "strategies and workflows over an in-process Grid (no Ray; one device after the other)")
        + f"; wall time {outcome['wall_seconds']} s "
        f"(features {'from the cache' if outcome['features_cached'] else 'computed'} in {outcome['feature_seconds']} s).", "",
        "## Accuracy on the global held-out set (10 classes)", "",
        "| split | " + " | ".join(f"federated {name} (final / best round)" for name in s["strategies"])
        + " | local-only, mean ± std over clients | centralized (union) |",
        "|---|" + "---|" * (len(s["strategies"]) + 2)]
    for split, result in outcome["splits"].items():
        cells = []
        for name in s["strategies"]:
            rounds = result["federated"][name]["rounds"]
            best = max(rounds, key=lambda r: r["global_accuracy"])
            cells.append(f"{_percent(rounds[-1]['global_accuracy'])} / {_percent(best['global_accuracy'])} "
                         f"(round {best['round']})")
        local = np.array([r["global_accuracy"] for r in result["local_only"]])
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {_percent(local.mean())} ± {100 * local.std():.1f} "
                     f"| {_percent(result['centralized']['global_accuracy'])} |")
    lines += ["", "## Accuracy on each client's own held-out images (its label distribution)", "",
              "| split | " + " | ".join(f"federated {name}, final global head" for name in s["strategies"])
              + " | local-only |", "|---|" + "---|" * (len(s["strategies"]) + 1)]
    for split, result in outcome["splits"].items():
        cells = [_percent(result["federated"][n]["final_clients_own_accuracy"]["mean"]) for n in s["strategies"]]
        local = np.array([r["own_accuracy"] for r in result["local_only"]])
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {_percent(local.mean())} |")
    first = outcome["splits"][next(iter(outcome["splits"]))]["federated"][s["strategies"][0]]["rounds"][1]
    if s.get("privacy"):
        lines += _privacy_section(s, outcome)
    lines += ["", "## Traffic and time per round", "",
              "Bytes are serialized Flower messages (the head's kernel and bias plus the round config; HTTP/TLS "
              "framing not counted), per client per round, train and evaluate messages together.", "",
              "| split | strategy | sent to a client | received from a client | seconds per round (median) |",
              "|---|---|---|---|---|"]
    for split, result in outcome["splits"].items():
        for name in result["federated"]:
            rounds = result["federated"][name]["rounds"][1:]
            seconds = float(np.median([r["seconds"] for r in rounds]))
            lines.append(f"| {split} | {name} | {rounds[0]['bytes_sent_per_client']['mean']:,.0f} B | "
                         f"{rounds[0]['bytes_received_per_client']['mean']:,.0f} B | {seconds:.2f} |")
    lines += ["", f"Clients reached per round: {first['clients_reached']}. The final global checkpoint, restored "
              "into a fresh model, gives the same class as the server's scoring from bottlenecks for "
              + ", ".join(f"{100 * r['federated'][n]['infer_agrees_with_server_scoring']:.1f} %"
                          for r in outcome["splits"].values() for n in r["federated"])
              + " of the checked test images (`infer` on the images).", "",
              f"![global accuracy vs round]({plot_name})", "", "## Per round", ""]
    for split, result in outcome["splits"].items():
        for name in result["federated"]:
            lines += [f"### {split}, {name}", "", "| round | global accuracy | global loss | clients' own accuracy | "
                      "train loss | seconds |", "|---|---|---|---|---|---|"]
            for r in result["federated"][name]["rounds"]:
                train = "–" if r["train_loss"] is None else f"{r['train_loss']:.3f}"
                lines.append(f"| {r['round']} | {_percent(r['global_accuracy'])} | {r['global_loss']:.3f} | "
                             f"{_percent(r['clients_own_accuracy'])} | {train} | {r['seconds']:.2f} |")
            lines.append("")
    lines += ["Rerun: `python -m benchmarks.federated` (see its `--help`); machine: "
              + ", ".join(f"{k} {v}" for k, v in machine.items()) + ". Round 0 is the compiled initial head.", ""]
    return "\n".join(lines)


def _epsilon(privacy: dict) -> str:
    value = privacy["epsilon"]
    if value is None:
        return "no DP"
    if isinstance(value, str):
        return value
    if value == float("inf"):
        return "none (no noise)"
    return f"{value:.1f} (bound {privacy['epsilon_rdp_bound']:.1f})"


def _privacy_section(s: dict, outcome: dict) -> list[str]:
    lines = ["", "## Privacy options against plain FedAvg (same clients, same model, same seeds)", "",
             f"Client-level differential privacy: each client clips its update (new head minus received head, "
             f"kernel and bias together) to L2 norm C with Flower's `fixedclipping_mod`; the server adds Gaussian "
             f"noise of standard deviation z C / {s['clients']} to the average (Flower's "
             f"`DifferentialPrivacyClientSideFixedClipping`; every update weighs the same). Epsilon at delta = "
             f"{s['dp_delta']:g} after {s['rounds']} rounds with all {s['clients']} clients in each (no sampling "
             "amplification), from Flower's RDP accountant (in brackets: the textbook RDP bound). It covers the "
             "published global heads only; the per-round training metrics clients report are not private. "
             f"SecAgg+: {s['secagg_num_shares']} shares, reconstruction threshold {s['secagg_reconstruction_threshold']}, "
             "Flower's defaults otherwise.", "",
             "| split | federation | z | C | epsilon | global accuracy (final / best) | vs FedAvg | "
             "sent to a client | received from a client | s / round |", "|---|---|---|---|---|---|---|---|---|---|"]
    for split, result in outcome["splits"].items():
        base = result["federated"]["fedavg"]["rounds"][-1]["global_accuracy"] if "fedavg" in result["federated"] else None
        for name, federation in result["federated"].items():
            privacy, rounds = federation.get("privacy", {}), federation["rounds"]
            if name not in ("fedavg",) and privacy.get("noise_multiplier") is None and not privacy.get("secure_aggregation"):
                continue
            best = max(r["global_accuracy"] for r in rounds)
            final = rounds[-1]["global_accuracy"]
            delta = "–" if base is None or name == "fedavg" else f"{100 * (final - base):+.1f} pt"
            z, clip = privacy.get("noise_multiplier"), privacy.get("clipping_norm")
            lines.append(
                f"| {split} | {name} | {'–' if z is None else f'{z:g}'} | {'–' if clip is None else f'{clip:g}'} | "
                f"{_epsilon(privacy) if privacy else 'no DP'} | {_percent(final)} / {_percent(best)} | {delta} | "
                f"{rounds[1]['bytes_sent_per_client']['mean']:,.0f} B | {rounds[1]['bytes_received_per_client']['mean']:,.0f} B | "
                f"{float(np.median([r['seconds'] for r in rounds[1:]])):.2f} |")
    return lines


def _plot(path: Path, settings: dict, outcome: dict) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(1, len(outcome["splits"]), figsize=(6 * len(outcome["splits"]), 4), sharey=True)
    axes = np.atleast_1d(axes)
    for axis, (split, result) in zip(axes, outcome["splits"].items()):
        for name in result["federated"]:
            rounds = result["federated"][name]["rounds"]
            axis.plot([r["round"] for r in rounds], [r["global_accuracy"] for r in rounds], marker=".",
                      label=f"federated {name}")
        axis.axhline(result["centralized"]["global_accuracy"], color="black", linestyle="--", label="centralized")
        local = np.mean([r["global_accuracy"] for r in result["local_only"]])
        axis.axhline(local, color="grey", linestyle=":", label="local-only (mean)")
        axis.set_title(f"{split}: {settings['clients']} clients, k = {settings['k']}")
        axis.set_xlabel("round")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the global held-out set")
    axes[0].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
