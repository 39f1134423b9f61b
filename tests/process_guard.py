"""No process a test starts may outlive it (tests/conftest.py runs this around every test).

A child left running (a killed test, a `finally` that forgot it, a child that ignores the
SIGINT it was sent because the suite inherited SIGINT as ignored) keeps files, ports and CPU
busy long after its test, and makes later tests depend on how the suite was started. After
each test, the processes it started that are still alive are listed, killed, and the test
fails at teardown naming them: its direct children and their descendants, and any process of
this process group born during the test (a grandchild whose parent already exited). Processes
that fixtures of a wider scope started before the test are left alone; zombies (exited, not yet
reaped) are not running. Linux /proc only: elsewhere the guard does nothing.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

_PROC = "/proc"


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, process group, start time in clock ticks) of a live process."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces and ')'
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def processes() -> dict[int, tuple[str, int, int, int]]:
    """Every process /proc shows, with its _stat fields."""
    found = {}
    for entry in os.listdir(_PROC):
        if entry.isdigit():
            status = _stat(int(entry))
            if status is not None:
                found[int(entry)] = status
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200] or "?"
    except OSError:
        return "?"


class Snapshot:
    """The processes alive when a test starts (this process's descendants), and the time."""

    def __init__(self):
        self.enabled = os.path.isdir(f"{_PROC}/self/task")
        self.started_ticks = _ticks_since_boot() if self.enabled else 0
        self.before = _descendants_by_children_files(os.getpid()) if self.enabled else set()

    def survivors(self) -> dict[int, str]:
        """pid -> command line of each process the test started that is still running."""
        if not self.enabled:
            return {}
        table = processes()
        candidates = _descendants_or_group(table, os.getpid(), os.getpgrp(), self.started_ticks)
        return {pid: command_line(pid) for pid in candidates
                if pid not in self.before and table[pid][0] not in ("Z", "X")}


def _descendants_by_children_files(root: int) -> set[int]:
    """Descendants from /proc/<pid>/task/<tid>/children (no scan of every process: fast)."""
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        try:
            tasks = os.listdir(f"{_PROC}/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"{_PROC}/{pid}/task/{task}/children", encoding="ascii") as handle:
                    children = [int(child) for child in handle.read().split()]
            except OSError:
                continue
            for child in children:
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def _descendants_or_group(table: dict, root: int, group: int, born_after: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = set(), list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    found |= {pid for pid, (_, _, pgrp, start) in table.items()
              if pgrp == group and pid != root and start >= born_after}
    return sorted(found)


def _ticks_since_boot() -> int:
    with open(f"{_PROC}/uptime", encoding="ascii") as handle:
        return int(float(handle.read().split()[0]) * os.sysconf("SC_CLK_TCK"))


def kill(pids, grace_seconds: float = 2.0) -> None:
    """SIGKILL each process (ours to end: the test started them) and reap our own children."""
    deadline = time.monotonic() + grace_seconds
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:  # not our child (a grandchild): init reaps it
                break
            time.sleep(0.01)


def wait_for_exits(snapshot: Snapshot, seconds: float = 2.0) -> dict[int, str]:
    """The survivors after giving processes a killed test just signalled time to exit."""
    deadline = time.monotonic() + seconds
    survivors = snapshot.survivors()
    while survivors and time.monotonic() < deadline:
        time.sleep(0.05)
        survivors = snapshot.survivors()
    return survivors


@pytest.fixture(autouse=True)
def no_process_outlives_its_test():
    """Every process a test starts must be ended by it (in a `finally`): a survivor is killed
    and the test fails at teardown naming it. Installed for every test by tests/conftest.py."""
    snapshot = Snapshot()
    yield
    survivors = wait_for_exits(snapshot)
    if survivors:
        kill(survivors)
        pytest.fail("the test left running: " + "; ".join(f"pid {pid} ({command})" for pid, command
                                                          in sorted(survivors.items()))
                    + " - end every process a test starts in a `finally`", pytrace=False)
