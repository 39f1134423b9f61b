"""The demo's static file server (runtime/web/serve.py, the one users run) on 127.0.0.1 in a
thread of the test process: runtime/web at /, a models directory at /models/; stopped by the
context manager."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from pathlib import Path

SERVE_SCRIPT = Path(__file__).resolve().parents[2] / "runtime" / "web" / "serve.py"


def _serve_module():
    """runtime/web/serve.py is a script beside the web files, not part of the Python package."""
    spec = importlib.util.spec_from_file_location("tflite_transfer_web_serve", SERVE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serve(root: Path, models: Path, isolated: bool = False):
    """Yields the origin, e.g. 'http://127.0.0.1:40123'. `isolated` sends the COOP/COEP
    headers that make the page cross-origin isolated (threads for LiteRT.js, a finer clock)."""
    server = _serve_module().make_server(root, models, isolated=isolated, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
