"""Small scripts the benchmark runs as child processes, some in the peers' own venvs.

Each script reads one JSON plan (argv[1]) and prints one JSON line on stdout. They import only
the standard library, numpy and the runtime they measure (plus `timing.py` beside them, which
Python finds because a script's own folder is on sys.path), so they run in any venv.
"""
