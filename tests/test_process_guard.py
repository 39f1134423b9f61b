"""tests/process_guard.py, which tests/conftest.py runs around every test: a process a test
leaves running is found (a child, or a grandchild whose parent exited), and processes started
before the test are not blamed on it. Run as an inner pytest session (pytester), so the
failure it must produce is observed, not suffered."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests import process_guard

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[1]


def test_a_child_left_running_is_found_and_a_reaped_one_is_not():
    snapshot = process_guard.Snapshot()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL)
    try:
        assert child.pid in snapshot.survivors()
    finally:
        process_guard.kill([child.pid])
        child.wait(timeout=60)
    assert child.pid not in snapshot.survivors()


def test_an_orphaned_grandchild_is_found_by_its_process_group():
    snapshot = process_guard.Snapshot()
    # The child starts a grandchild and exits at once: the grandchild is reparented to init.
    script = ("import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
              "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    grandchild = int(output.stdout)
    try:
        assert grandchild in snapshot.survivors()
    finally:
        process_guard.kill([grandchild])
    deadline = time.monotonic() + 10
    while grandchild in snapshot.survivors() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert grandchild not in snapshot.survivors()


def test_processes_started_before_the_test_are_not_its_own():
    earlier = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.05)
        assert earlier.pid not in process_guard.Snapshot().survivors()
    finally:
        earlier.kill()
        earlier.wait(timeout=60)


def test_the_conftest_fails_a_test_that_leaves_a_child(pytester, monkeypatch):
    """The real hook, in an inner session that installs it as tests/conftest.py does."""
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makeconftest("from tests.process_guard import no_process_outlives_its_test  # noqa: F401\n")
    pytester.makepyfile(test_leaky=textwrap.dedent("""
        import subprocess, sys
        def test_leaks():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        def test_cleans_up():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            try:
                pass
            finally:
                child.kill()
                child.wait()
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*",
                                 "the test left running: pid * (*time.sleep(60)) - end every process*"])
