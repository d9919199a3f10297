"""Start a server under `taskset` in a session of its own and find, measure and end every process it made.

A server's processes are those in its session (it starts one with `setsid`), plus any that carry its marker in
their environment: Ray's actors move to process groups of their own, and a daemon could leave the session, but
all inherit the environment. Ending a server means SIGTERM to all of them, SIGKILL to what is left after a grace
period, and a check that nothing remains."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from loadtest.bench import process_cpu_s, process_memory_mb

MARKER = "CATDOG_PEERS_RUN"


def start(
    command: list[str], cpus: str, env: dict[str, str], cwd: Path, log: Path, marker: str
) -> subprocess.Popen[bytes]:
    """`taskset -c cpus command` in a new session, output to `log`; children and threads inherit the pin."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["taskset", "-c", cpus, *command],
            env={**env, MARKER: marker},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _session(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp session ...
    return int(fields[3]) if fields[0] != "Z" else None


def _has_marker(pid: int, marker: str) -> bool:
    try:
        return f"{MARKER}={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def tree(leader: int, marker: str) -> list[int]:
    """Live (non-zombie) processes of the server started as `leader`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        session = _session(pid)
        if session is not None and (session == leader or _has_marker(pid, marker)):
            found.append(pid)
    return sorted(found)


def tree_memory_mb(leader: int, marker: str) -> dict[str, float]:
    """Resident memory summed over the whole process tree (shared pages count once per process, as `ps` shows
    them), and how many processes that is."""
    pids = tree(leader, marker)
    rss = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            rss += process_memory_mb(pid)["rss_mb"]
    return {"rss_mb": round(rss, 1), "processes": len(pids)}


def tree_cpu_s(leader: int, marker: str) -> float:
    """CPU seconds (user + system) the tree's live processes have used: read around a run, what a server costs
    per request whatever else held the core (a process that exits during the run takes its share with it)."""
    total = 0.0
    for pid in tree(leader, marker):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += process_cpu_s(pid)
    return total


def unpinned(leader: int, marker: str, cpus: set[int]) -> dict[int, list[int]]:
    """Processes of the tree allowed to run outside `cpus` (a framework that resets its workers' affinity would
    get more than the one core every server is given): pid -> its CPUs."""
    out = {}
    for pid in tree(leader, marker):
        with contextlib.suppress(OSError):
            allowed = os.sched_getaffinity(pid)
            if not allowed <= cpus:
                out[pid] = sorted(allowed)
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop(proc: subprocess.Popen[bytes], marker: str, grace_s: float = 10.0) -> list[int]:
    """End the whole tree; returns the pids still alive afterwards (an empty list is the expected answer)."""
    leader = proc.pid
    _signal_all(tree(leader, marker), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        if not tree(leader, marker):
            break
        time.sleep(0.1)
    for _ in range(50):
        left = tree(leader, marker)
        if not left:
            break
        _signal_all(left, signal.SIGKILL)
        proc.poll()
        time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    return tree(leader, marker)
