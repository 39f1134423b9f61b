"""runtime/installation.py: install hints that work for how this copy was installed (the
package is on no index)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

from tflite_transfer.runtime import installation


class FakeDistribution:
    def __init__(self, direct_url):
        self._text = None if direct_url is None else json.dumps(direct_url)

    def read_text(self, name):
        return self._text if name == "direct_url.json" else None


@pytest.fixture()
def installed_as(monkeypatch):
    def install(direct_url):
        monkeypatch.setattr(importlib.metadata, "distributions", lambda name: [FakeDistribution(direct_url)])
    return install


def test_the_copy_with_an_install_record_is_named(monkeypatch, tmp_path):
    """A build in a checkout leaves a tflite_transfer.egg-info (no direct_url.json) that Python
    finds first when it runs from that folder: the install's own record is still found."""
    record = {"url": tmp_path.as_uri(), "dir_info": {"editable": True}}
    monkeypatch.setattr(importlib.metadata, "distributions",
                        lambda name: [FakeDistribution(None), FakeDistribution(record)])
    assert installation.install_command("compiler") == f"pip install -e '{tmp_path}[compiler]'"


def test_an_editable_checkout_names_its_folder(installed_as, tmp_path):
    installed_as({"url": tmp_path.as_uri(), "dir_info": {"editable": True}})
    assert installation.install_command("compiler") == f"pip install -e '{tmp_path}[compiler]'"


def test_a_checkout_installed_as_a_copy_names_its_folder(installed_as, tmp_path):
    folder = tmp_path / "my checkout"
    folder.mkdir()
    installed_as({"url": folder.as_uri(), "dir_info": {}})
    assert installation.install_command("federated") == f"pip install '{folder}[federated]'"


def test_a_wheel_file_is_named(installed_as, tmp_path):
    wheel = tmp_path / "tflite_transfer-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    installed_as({"url": wheel.as_uri(), "archive_info": {}})
    assert installation.install_command("compiler") == f"pip install '{wheel}[compiler]'"


@pytest.mark.parametrize("direct_url", [
    None,                                                         # from an index: no direct_url.json
    {"url": "https://example.org/tflite_transfer-0.1.0.tar.gz", "archive_info": {}},
    {"url": "file:///nonexistent/checkout", "dir_info": {}},      # the folder is gone
])
def test_otherwise_the_index_form_with_the_checkout_form(installed_as, direct_url):
    installed_as(direct_url)
    assert installation.install_command("compiler") == \
        "pip install 'tflite-transfer[compiler]' (from a checkout of its source: pip install '.[compiler]')"


def test_this_checkout_is_named_for_real():
    """The test venv's own install (pip install -e . of this checkout): the hint names a folder
    holding this project's pyproject.toml, and pip accepts the requirement as written."""
    command = installation.install_command("compiler")
    source = installation.installed_from()
    assert source is not None, "this test environment was not installed from a local folder"
    path, _ = source
    assert f"{path}[compiler]" in command
    with open(f"{path}/pyproject.toml") as pyproject:
        assert 'name = "tflite-transfer"' in pyproject.read()
    requirement = command.split("pip install ", 1)[1].removeprefix("-e ").strip("'")
    dry_run = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                              "--no-build-isolation", "--quiet", requirement],
                             capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=300)
    assert dry_run.returncode == 0, dry_run.stderr[-2000:]
