"""The machine's load slots: shared by processes, released when their holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from mytrader_pipeline.core.load_slots import machine_slot

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from pathlib import Path
from mytrader_pipeline.core.load_slots import machine_slot
with machine_slot(1, "w", Path(sys.argv[1])) as number:
    print(number, flush=True)
    time.sleep(120)
"""


def _take_in_background(limit: int, directory: Path) -> tuple[threading.Event, threading.Thread, list[int]]:
    taken = threading.Event()
    numbers: list[int] = []

    def take() -> None:
        with machine_slot(limit, "w", directory) as number:
            numbers.append(number)
            taken.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return taken, thread, numbers


def test_a_slot_held_by_another_process_is_waited_for_and_freed_when_that_process_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "0"  # it holds slot 0
        taken, thread, numbers = _take_in_background(1, tmp_path)
        assert not taken.wait(0.5)  # the only slot is the other process's
        holder.send_signal(signal.SIGKILL)  # a worker killed mid-load
        holder.wait()
        assert taken.wait(10)
        thread.join(10)
        assert numbers == [0]
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_process_allowed_two_groups_takes_the_second_slot_and_waits_for_a_third(tmp_path: Path) -> None:
    with machine_slot(2, "w", tmp_path) as first, machine_slot(2, "w", tmp_path) as second:
        assert (first, second) == (0, 1)
        taken, thread, numbers = _take_in_background(2, tmp_path)
        assert not taken.wait(0.5)
    assert taken.wait(10)  # a slot freed: the waiting group goes on
    thread.join(10)
    assert numbers[0] in (0, 1)


def test_loads_into_another_database_do_not_wait_for_these() -> None:
    """Slots are per warehouse: two deployments on a machine (or two test databases) do not share them."""
    with machine_slot(1, "postgresql://127.0.0.1/one") as first, machine_slot(1, "postgresql://127.0.0.1/two") as other:
        assert (first, other) == (0, 0)
