"""A static file server on 127.0.0.1 for the demo page: runtime/web at /, a models directory
at /models/. Runs in a thread of the test process; stopped by the context manager."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}

    def __init__(self, *args, root: Path, models: Path, isolated: bool, **kwargs):
        self._models, self._isolated = models, isolated
        super().__init__(*args, directory=str(root), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith("/models/"):
            name = os.path.basename(path.split("?", 1)[0])
            return str(self._models / name)
        return super().translate_path(path)

    def end_headers(self):
        if self._isolated:   # cross-origin isolation: a 5 us page clock instead of 100 us
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(root: Path, models: Path, isolated: bool = False):
    """Yields the origin, e.g. 'http://127.0.0.1:40123'. `isolated` sends the COOP/COEP
    headers that make the page cross-origin isolated (finer timers, for benchmarks)."""
    handler = functools.partial(_Handler, root=root, models=models, isolated=isolated)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
