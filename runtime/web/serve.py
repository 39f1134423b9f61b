#!/usr/bin/env python3
"""Serves runtime/web (the demo page, src/, node_modules/) cross-origin isolated, so LiteRT.js
runs its multi-threaded wasm: threads need SharedArrayBuffer, which a browser gives only to a
page served with `Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp` (`python3 -m http.server` cannot send them, and
the page then runs on one thread). Python's standard library only.

    cd runtime/web && npm ci
    python3 runtime/web/serve.py                  # then open http://127.0.0.1:8000/demo/
    python3 runtime/web/serve.py --models DIR     # DIR's files at /models/: /demo/?model=/models/NAME.tflite
    python3 runtime/web/serve.py --port 0         # any free port (printed)
    python3 runtime/web/serve.py --no-isolation   # as python3 -m http.server would: one thread

It binds 127.0.0.1 unless --bind says otherwise: a browser treats http://127.0.0.1 and
http://localhost as secure contexts (needed for SubtleCrypto and for cross-origin isolation);
from another machine, serve over https (BUILD.md, "The web runtime", has the headers for nginx,
Apache and static hosts). Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
ISOLATION_HEADERS = (("Cross-Origin-Opener-Policy", "same-origin"),
                     ("Cross-Origin-Embedder-Policy", "require-corp"))


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files of `root`, `models` at /models/, the isolation headers on every answer."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}

    def __init__(self, *args, root: Path, models: Path | None, isolated: bool, quiet: bool, **kwargs):
        self._models, self._isolated, self._quiet = models, isolated, quiet
        super().__init__(*args, directory=str(root), **kwargs)

    def translate_path(self, path: str) -> str:
        if self._models is not None and path.startswith("/models/"):
            return str(self._models / os.path.basename(path.split("?", 1)[0].split("#", 1)[0]))
        return super().translate_path(path)

    def end_headers(self) -> None:
        if self._isolated:
            for name, value in ISOLATION_HEADERS:
                self.send_header(name, value)
        super().end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        if not self._quiet:
            super().log_message(format, *args)


def make_server(root: Path = WEB_DIR, models: Path | None = None, isolated: bool = True,
                bind: str = "127.0.0.1", port: int = 8000, quiet: bool = True) -> http.server.ThreadingHTTPServer:
    """A server (not yet serving) for `root`; its port is server.server_address[1]."""
    handler = functools.partial(Handler, root=Path(root), models=None if models is None else Path(models),
                                isolated=isolated, quiet=quiet)
    return http.server.ThreadingHTTPServer((bind, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    parser.add_argument("--models", type=Path, help="a directory served at /models/ (e.g. compiled .tflite files)")
    parser.add_argument("--no-isolation", action="store_true", help="omit COOP/COEP: LiteRT.js then runs one thread")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.models is not None and not args.models.is_dir():
        print(f"serve.py: --models {args.models} is not a directory", file=sys.stderr)
        return 1
    if not (WEB_DIR / "node_modules" / "@litertjs" / "core").is_dir():
        print(f"serve.py: {WEB_DIR}/node_modules is missing: run npm ci in {WEB_DIR}", file=sys.stderr)
        return 1
    try:
        server = make_server(WEB_DIR, args.models, not args.no_isolation, args.bind, args.port, quiet=not args.verbose)
    except OSError as error:
        print(f"serve.py: cannot listen on {args.bind}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    mode = ("cross-origin isolated: LiteRT.js may use threads" if not args.no_isolation
            else "not isolated: LiteRT.js runs one thread")
    print(f"Serving {WEB_DIR} at http://{host}:{port}/demo/ ({mode}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
