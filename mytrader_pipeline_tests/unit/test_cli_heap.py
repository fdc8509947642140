"""The ``mytrader`` process's heap handling (``cli.heap``): imports with the collector paused, then frozen."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from mytrader_pipeline.cli import heap


def test_heavy_imports_leave_another_process_collector_alone() -> None:
    frozen = gc.get_freeze_count()
    with heap.heavy_imports():
        assert gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_in_a_mytrader_process_imports_run_paused_and_are_frozen_after() -> None:
    probe = textwrap.dedent(
        """
        import gc
        from mytrader_pipeline.cli import heap
        heap.enter_process()  # as the entry point does
        before = gc.get_freeze_count()
        with heap.heavy_imports():
            paused = not gc.isenabled()
            import dagster  # noqa: F401
        print(paused, gc.isenabled(), gc.get_freeze_count() > before + 100_000)
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True", "True"]


def test_the_command_exits_with_its_code_through_the_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "mytrader_pipeline.cli", "no-such-command"], capture_output=True)
    assert done.returncode == 2
    done = subprocess.run([sys.executable, "-m", "mytrader_pipeline.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "mytrader" in done.stdout.lower()
