"""What every benchmark writes: the machine's facts, and one JSON file (all figures) plus one
Markdown file per run, named `<title>-<UTC time>` so reruns never overwrite.

`write_report` is the row format of the host and adb (`benchmarks/android/`) benchmarks (a
phone and a laptop can be compared row by row); benchmarks with their own document shape use `result_paths` and
`write_document`. JSON holds every number; Markdown is for reading in a PR.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import re
import sys
from pathlib import Path

from tflite_transfer.runtime.errors import InvalidInputError

# Bump when a field of Measurement or of the JSON envelope changes meaning or name.
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One benchmarked configuration: a signature run `runs` times on one device and runtime.

    Times are microseconds. A run that failed has `median_us = nan` and `extra["error"]` set.
    """

    scenario: str
    signature: str
    runtime: str
    device: str
    threads: int
    delegate: str
    batch: int | None
    runs: int
    median_us: float
    min_us: float | None
    max_us: float | None
    peak_memory_mib: float | None
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return "error" in self.extra


@dataclasses.dataclass(frozen=True)
class Report:
    """A report as read back from its JSON file."""

    schema_version: int
    title: str
    created_utc: str
    machine: dict[str, str]
    notes: list[str]
    measurements: list[Measurement]
    # Derived figures (ratios, file sizes, versions) of reports that have them; {} otherwise.
    summary: dict = dataclasses.field(default_factory=dict)


def machine_facts(packages: tuple[str, ...] = ("ai-edge-litert", "tensorflow-cpu", "numpy")) -> dict[str, str]:
    """Python, platform, CPU model and count, load average now, and the packages' versions."""
    facts = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu count": str(os.cpu_count())}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            facts["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        facts["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415
    for package in packages:
        try:
            facts[package] = version(package)
        except PackageNotFoundError:  # a missing package is a fact too
            facts[package] = "not installed"
    return facts


def result_paths(results_dir: str | Path, title: str, suffixes: tuple[str, ...] = ("json", "md"),
                 created: datetime.datetime | None = None) -> dict[str, Path]:
    """`{suffix: <results_dir>/<title-slug>-<UTC time>.<suffix>}`, the folder created."""
    created = created or datetime.datetime.now(datetime.timezone.utc)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_slug(title)}-{created.strftime('%Y%m%dT%H%M%SZ')}"
    return {suffix: results_dir / f"{stem}.{suffix}" for suffix in suffixes}


def write_document(paths: dict[str, Path], document: dict, markdown: str) -> None:
    """Writes the JSON document and the Markdown text to the paths of `result_paths`."""
    paths["json"].write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown, encoding="utf-8")


def write_report(
    results_dir: str | Path,
    title: str,
    measurements: list[Measurement],
    machine: dict[str, str],
    notes: list[str],
    summary: dict | None = None,
    sections: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write `<results_dir>/<stem>.json` and `<stem>.md`; return both paths.

    The stem is the title in lower-case-dashes plus a UTC timestamp, so reruns never overwrite.
    `summary` (derived figures) goes into the JSON; `sections` (Markdown blocks) go between the
    machine facts and the table of every measurement.
    """
    created = datetime.datetime.now(datetime.timezone.utc)
    paths = result_paths(results_dir, title, created=created)
    json_path, markdown_path = paths["json"], paths["md"]

    document = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "created_utc": created.isoformat(timespec="seconds"),
        "machine": dict(machine),
        "notes": list(notes),
        "measurements": [_finite_or_none(dataclasses.asdict(m)) for m in measurements],
    }
    if summary:
        document["summary"] = _finite_or_none(summary)
    # allow_nan=False: a NaN would make the file unreadable to strict JSON parsers (jq, JS).
    json_path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    markdown_path.write_text(
        _render_markdown(title, document["created_utc"], measurements, machine, notes, sections or []),
        encoding="utf-8",
    )
    return json_path, markdown_path


def read_report(json_path: str | Path) -> Report:
    """Load a report written by `write_report` (a failed row's median comes back as nan)."""
    json_path = Path(json_path)
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{json_path}: no such report file.") from None
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{json_path}: not a JSON report ({error}).") from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version != SCHEMA_VERSION:
        raise InvalidInputError(
            f"{json_path}: report schema version {version!r}, this code reads version "
            f"{SCHEMA_VERSION}; regenerate the report with the current benchmarks."
        )
    field_names = {field.name for field in dataclasses.fields(Measurement)}
    measurements = []
    for row in document["measurements"]:
        unknown = set(row) - field_names
        if unknown:
            raise InvalidInputError(f"{json_path}: unknown measurement fields {sorted(unknown)}.")
        if row["median_us"] is None:
            row = {**row, "median_us": math.nan}
        measurements.append(Measurement(**row))
    return Report(
        schema_version=version,
        title=document["title"],
        created_utc=document["created_utc"],
        machine=document["machine"],
        notes=document["notes"],
        measurements=measurements,
        summary=document.get("summary", {}),
    )


def format_duration(median_us: float, min_us: float | None = None, max_us: float | None = None) -> str:
    """'3.66 ms (3.60–3.90 ms)': one unit chosen from the median, applied to all three."""
    if math.isnan(median_us):
        return "—"
    if median_us < 1_000:
        unit, scale, digits = "µs", 1.0, 0
    elif median_us < 1_000_000:
        unit, scale, digits = "ms", 1e3, 2
    else:
        unit, scale, digits = "s", 1e6, 3
    text = f"{median_us / scale:.{digits}f} {unit}"
    if min_us is not None and max_us is not None:
        text += f" ({min_us / scale:.{digits}f}–{max_us / scale:.{digits}f} {unit})"
    return text


def _render_markdown(
    title: str,
    created_utc: str,
    measurements: list[Measurement],
    machine: dict[str, str],
    notes: list[str],
    sections: list[str] = (),
) -> str:
    lines = [f"# {title}", "", f"Created {created_utc}.", ""]
    if machine:
        lines += ["| fact | value |", "|---|---|"]
        lines += [f"| {_cell(key)} | {_cell(value)} |" for key, value in machine.items()]
        lines.append("")
    for section in sections:
        lines += [section.rstrip("\n"), ""]
    if sections:
        lines += ["## Every measurement", ""]
    lines += [
        "| scenario | signature | runtime | device | threads | delegate | batch "
        "| median (min–max) | runs | peak memory |",
        "|---|---|---|---|---:|---|---:|---|---:|---:|",
    ]
    for m in measurements:
        timing = f"failed: {m.extra['error']}" if m.failed else format_duration(m.median_us, m.min_us, m.max_us)
        batch = "—" if m.batch is None else str(m.batch)
        memory = "—" if m.peak_memory_mib is None else f"{m.peak_memory_mib:.1f} MiB"
        cells = [m.scenario, m.signature, m.runtime, m.device, str(m.threads), m.delegate, batch,
                 timing, str(m.runs), memory]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    # A '|' or newline inside a cell (error messages have both) would break the table.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "benchmark"


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value
