"""Threads in the browser: runtime/web/serve.py (the documented way to serve the demo) sends
the COOP/COEP headers, the page is then really cross-origin isolated, LiteRT.js loads its
multi-threaded wasm, says so, and predicts and trains with it; with --no-isolation (what
`python3 -m http.server` gives) the page says it runs one thread, and still works. Each server
is started as a user would start it, as its own process, and ended in a `finally`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.web.page_server import SERVE_SCRIPT
from tests.web.web_fixtures import WEB_DIR, require_tool, web_models, web_packages  # noqa: F401


def _start_server(models, *flags) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(SERVE_SCRIPT), "--port", "0", "--models", str(models), *flags],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()           # "Serving ... at http://127.0.0.1:PORT/demo/ (...)"
    if "http://127.0.0.1:" not in line:
        process.kill()
        _, stderr = process.communicate(timeout=60)
        raise AssertionError(f"serve.py did not start: {line!r} {stderr!r}")
    return process, line.split(" at ", 1)[1].split("/demo/", 1)[0]


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "not_isolated"])
def test_serve_script_makes_the_demo_cross_origin_isolated_and_threaded(web_packages, web_models, isolated):
    node = require_tool("node")
    require_tool("chromium")
    process, origin = _start_server(web_models, *(() if isolated else ("--no-isolation",)))
    try:
        headers = urllib.request.urlopen(f"{origin}/demo/", timeout=10).headers
        assert headers.get("Cross-Origin-Opener-Policy") == ("same-origin" if isolated else None)
        assert headers.get("Cross-Origin-Embedder-Policy") == ("require-corp" if isolated else None)
        result = subprocess.run([node, "browser/page_mode.mjs", origin, "/models/tiny_static.tflite"], cwd=WEB_DIR,
                                capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=300)
    finally:
        _stop(process)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert "failure" not in report, report
    assert report["consoleErrors"] == []
    assert report["crossOriginIsolated"] is isolated and report["sharedArrayBuffer"] is isolated
    if isolated:
        assert report["wasmFiles"] == ["litert_wasm_threaded_internal.wasm"]
        assert report["threads"] == report["hardwareConcurrency"] >= 1
        assert report["mode"].startswith(f"LiteRT.js wasm, {report['threads']} threads (cross-origin isolated")
    else:
        assert report["wasmFiles"] == ["litert_wasm_internal.wasm"]
        assert report["threads"] == 1
        assert "1 thread: the page is not cross-origin isolated" in report["mode"] and "serve.py" in report["mode"]
    assert abs(sum(report["probabilities"]) - 1) < 1e-5 and len(report["probabilities"]) == 3
    assert report["loss"] > 0


def test_serve_script_refuses_a_missing_models_directory(tmp_path):
    result = subprocess.run([sys.executable, str(SERVE_SCRIPT), "--port", "0", "--models", str(tmp_path / "absent")],
                            capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("serve.py: --models ") and result.stderr.count("\n") == 1
