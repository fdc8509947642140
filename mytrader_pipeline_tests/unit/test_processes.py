"""Process liveness from /proc: a running process is alive; a dead, zombie or reused pid is not."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mytrader_pipeline.core.processes import START_SLACK_SECONDS, is_running, process_start_time

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def test_a_running_process_known_since_it_started_is_running() -> None:
    started = process_start_time(os.getpid())
    assert started is not None and started <= time.time()
    assert is_running(os.getpid(), known_at=time.time())


def test_a_process_that_exited_and_was_reaped_is_not_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start_time(child.pid) is None
    assert not is_running(child.pid, known_at=time.time())


def test_a_zombie_is_not_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ", 1)[1][0] != "Z":  # exited, not reaped
            time.sleep(0.01)
        assert not is_running(child.pid, known_at=time.time())
    finally:
        child.wait()


def test_a_pid_now_held_by_a_process_started_after_it_was_known_is_another_process() -> None:
    # As after a restart, or once pids wrap: the pid runs, but not the process that had it back then.
    long_ago = time.time() - 3600
    assert not is_running(os.getpid(), known_at=long_ago)
    assert is_running(os.getpid(), known_at=process_start_time(os.getpid()) - START_SLACK_SECONDS / 2)


@pytest.mark.parametrize("pid", [0, -1])
def test_no_pid_is_not_running(pid: int) -> None:
    assert not is_running(pid, known_at=time.time())


def test_a_command_name_with_spaces_and_parentheses_is_read(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    fields = ["S", *["0"] * 18, "500", "0"]  # state, then fields 4..21, start time (field 22) of 500 ticks
    (proc / "42" / "stat").write_text(f"42 (odd) name (x)) {' '.join(fields)}\n")
    (proc / "stat").write_text("cpu 1 2 3\nbtime 1000\n")
    assert process_start_time(42, proc) == 1000 + 500 / os.sysconf("SC_CLK_TCK")
    assert is_running(42, known_at=1000 + 500 / os.sysconf("SC_CLK_TCK"), proc=proc)
