"""Local process liveness: is the process that held a pid at some moment still running (Linux ``/proc``)."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
# How much later than ``known_at`` a process may seem to have started and still count as the same one: /proc's boot
# time is whole seconds, and a small step of the wall clock moves it. A process started later than this holds a
# reused pid. Erring long only delays detection (the run's max runtime still bounds it); erring short would fail a
# live run.
START_SLACK_SECONDS = 10.0


def _boot_time(proc: Path) -> float:
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_start_time(pid: int, proc: Path = PROC) -> float | None:
    """When process ``pid`` started (epoch seconds); None if there is none, or it has exited (a zombie)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return None
    ticks = int(fields[19])  # field 22 of proc(5): start time, in clock ticks after boot
    return _boot_time(proc) + ticks / os.sysconf("SC_CLK_TCK")


def is_running(pid: int, known_at: float, proc: Path = PROC) -> bool:
    """Whether the process that had ``pid`` at ``known_at`` (epoch seconds) is still running.

    A process now holding ``pid`` that started after ``known_at`` (plus ``START_SLACK_SECONDS``) is another one: pids
    are reused, quickly on a busy machine and from the start after a restart. Without ``/proc`` (not Linux) only
    the pid is probed.
    """
    if pid <= 0:
        return False
    if not proc.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    started = process_start_time(pid, proc)
    return started is not None and started <= known_at + START_SLACK_SECONDS
