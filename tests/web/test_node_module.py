"""runtime/web's module tests (node --test, LiteRT.js in Node) against references computed
here: the model's metadata, `load`, `train` steps and checkpoints of the Python runtime."""

from __future__ import annotations

import os
import re
import subprocess

from tests.web.web_fixtures import WEB_DIR, node_fixtures, require_tool, web_models, web_packages  # noqa: F401


def test_node_module_tests_pass_against_python_references(web_packages, node_fixtures):
    node = require_tool("node")
    environment = {**os.environ, "TFLITE_TRANSFER_WEB_FIXTURES": str(node_fixtures)}
    result = subprocess.run([node, "--test", "--test-reporter=tap", "test/"], cwd=WEB_DIR, env=environment,
                            capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert re.search(r"^# skip(ped)? 0$", report, re.MULTILINE), report[-3000:]
    assert int(re.search(r"^# pass (\d+)$", report, re.MULTILINE).group(1)) >= 10, report[-3000:]
