"""A command's wall clock, CPU and peak RSS (``os.wait4`` ``ru_maxrss``, its children included), measured honestly.

``ru_maxrss`` of a child counts the memory of the process it was forked from: Linux carries the pre-``exec``
high-water mark into it (a ``/bin/true`` child of a 1.5 GiB parent reports 1.5 GiB). So the command is not started
from the benchmark, whose memory grows (trees generated, frames exported), but from this module run as a small
launcher process: the launcher (a fresh interpreter, ~10 MiB) starts the command, reaps it with ``os.wait4`` and writes
its figures as JSON. ``ru_maxrss`` of a reaped child is the highest of its own and its reaped descendants' peaks.

    python benchmarks/measured.py RESULT.json -- COMMAND [ARGS...]
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024**2
GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Measured:
    """What one command cost: wall and CPU seconds, peak RSS in bytes, exit code and its captured output."""

    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    exit_code: int
    stdout: str
    stderr: str

    def figures(self) -> dict[str, Any]:
        """The JSON-able figures (no output)."""
        return {
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_rss_mib": round(self.peak_rss_bytes / MIB, 1),
        }


def run_measured(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run ``command`` through the launcher; its figures, whatever its exit code (the caller decides)."""
    with (
        tempfile.TemporaryDirectory(prefix="mt_measured_") as scratch,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        result = Path(scratch) / "result.json"
        launcher = [sys.executable, str(Path(__file__).resolve()), str(result), "--", *command]
        subprocess.run(launcher, cwd=cwd, env=env, stdout=out, stderr=err, text=True, check=False)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        if not result.exists():
            raise RuntimeError(f"the launcher failed before reporting: {stderr[-3000:]}")
        figures = json.loads(result.read_text())
    return Measured(
        seconds=figures["seconds"],
        cpu_seconds=figures["cpu_seconds"],
        peak_rss_bytes=figures["ru_maxrss_kib"] * 1024,
        exit_code=figures["exit_code"],
        stdout=stdout,
        stderr=stderr,
    )


def scale_ratio(seconds_a: float, seconds_b: float, scale_a: float, scale_b: float) -> dict[str, float]:
    """Time of B over A against linear scaling: ``ratio``, ``linear`` (B/A) and ``of_linear`` (1.0 is linear).

    Issue 12 asks for scale 10 in at most 10.5 x scale 1: ``of_linear <= 1.05``.
    """
    if seconds_a <= 0 or scale_a <= 0 or scale_b <= 0:
        raise ValueError("times and scales must be positive")
    ratio = seconds_b / seconds_a
    linear = scale_b / scale_a
    return {"ratio": ratio, "linear": linear, "of_linear": ratio / linear}


def _launch(result: Path, command: list[str]) -> int:
    """Start ``command`` (sharing this process's stdout/stderr), reap it, write its figures; its exit code."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = code = os.waitstatus_to_exitcode(status)
    figures = {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "ru_maxrss_kib": usage.ru_maxrss,  # KiB on Linux
        "exit_code": code,
    }
    result.write_text(json.dumps(figures))
    return code


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: measured.py RESULT.json -- COMMAND [ARGS...]")
    sys.exit(_launch(Path(sys.argv[1]), sys.argv[3:]))
