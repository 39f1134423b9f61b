"""Peak RSS of a process that only imports a runtime: the floor under every memory figure.

    python import_only.py MODULE [MODULE ...]
"""

import importlib
import sys

from timing import emit, peak_rss_mib

for name in sys.argv[1:]:
    importlib.import_module(name)
emit({"modules": sys.argv[1:], "peak_rss_mib": peak_rss_mib()})
