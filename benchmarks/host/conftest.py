"""Fixtures of the pytest-benchmark suite (`pytest benchmarks/`; the default `pytest` run
collects tests/ only). The fused models are compiled once per session; the base size comes
from $BENCH_ALPHA and $BENCH_IMAGE_SIZE (default: the full MobileNetV2 1.0 224)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def subjects(tmp_path_factory):
    from benchmarks.host.subjects import build_subjects

    return build_subjects(tmp_path_factory.mktemp("bench"), alpha=float(os.environ.get("BENCH_ALPHA", "1.0")),
                          image_size=int(os.environ.get("BENCH_IMAGE_SIZE", "224")), num_classes=4,
                          learning_rate=0.001, progress=lambda m: None)
