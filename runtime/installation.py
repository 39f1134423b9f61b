"""The command that installs an extra of this package (`compiler`, `federated`), in the form
that works for how this copy was installed.

tflite-transfer is on no package index, so `pip install 'tflite-transfer[compiler]'` fails. pip
records where a package came from in the distribution's `direct_url.json` (PEP 610): a
checkout folder (`pip install .` or `-e .`) or a wheel file; naming that path with the extra
works. Without such a record the index form is given, with the checkout form beside it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import urllib.parse

DISTRIBUTION = "tflite-transfer"


def installed_from() -> tuple[str, bool] | None:
    """(the local folder or wheel file this copy was installed from, editable?) or None."""
    # Every copy of the distribution on the path: a build in a checkout leaves a
    # tflite_transfer.egg-info beside pyproject.toml (no direct_url.json) that shadows the install
    # when Python runs from that folder.
    try:
        texts = [dist.read_text("direct_url.json") for dist in importlib.metadata.distributions(name=DISTRIBUTION)]
        text = next((text for text in texts if text), None)
        record = json.loads(text) if text else {}
    except (ValueError, OSError):
        return None
    url = record.get("url") if isinstance(record, dict) else None
    if not isinstance(url, str) or not url.startswith("file://"):
        return None
    path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    if not os.path.exists(path):
        return None
    dir_info = record.get("dir_info")
    return path, isinstance(dir_info, dict) and dir_info.get("editable") is True


def install_command(extra: str) -> str:
    """e.g. "pip install -e '/home/me/tflite-transfer[compiler]'" for an editable checkout."""
    source = installed_from()
    if source is not None:
        path, editable = source
        return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{path}[{extra}]')}"
    return f"pip install 'tflite-transfer[{extra}]' (from a checkout of its source: pip install '.[{extra}]')"
