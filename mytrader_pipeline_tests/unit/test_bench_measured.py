"""The benchmarks' command measurement: peak RSS of the command itself (not of its parent), exit code, output."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

MIB = 1024**2


@pytest.fixture(scope="module")
def measured() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "measured.py"
    spec = importlib.util.spec_from_file_location("bench_measured", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_peak_rss_counts_what_the_command_allocated(measured: ModuleType) -> None:
    code = "b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('done')"
    result = measured.run_measured([sys.executable, "-c", code])
    assert result.exit_code == 0
    assert result.stdout.strip() == "done"
    assert result.peak_rss_bytes >= 300 * MIB


def test_peak_rss_counts_the_commands_children(measured: ModuleType) -> None:
    inner = "b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {inner!r}], check=True)"
    assert measured.run_measured([sys.executable, "-c", code]).peak_rss_bytes >= 300 * MIB


def test_peak_rss_excludes_the_memory_of_the_process_that_measures(measured: ModuleType) -> None:
    ballast = bytearray(600 * MIB)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched, so resident
    result = measured.run_measured(["true"])
    del ballast
    assert result.peak_rss_bytes < 100 * MIB


def test_exit_code_and_error_output_are_reported(measured: ModuleType) -> None:
    result = measured.run_measured([sys.executable, "-c", "import sys; sys.stderr.write('bad'); sys.exit(3)"])
    assert (result.exit_code, result.stderr) == (3, "bad")
    assert set(result.figures()) == {"seconds", "cpu_seconds", "peak_rss_mib"}


def test_scale_ratio_against_linear(measured: ModuleType) -> None:
    figures = measured.scale_ratio(10.0, 105.0, 1.0, 10.0)
    assert figures["ratio"] == pytest.approx(10.5)
    assert figures["linear"] == pytest.approx(10.0)
    assert figures["of_linear"] == pytest.approx(1.05)


@pytest.mark.parametrize("args", [(0.0, 1.0, 1.0, 2.0), (1.0, 1.0, 0.0, 2.0), (1.0, 1.0, 1.0, -1.0)])
def test_scale_ratio_rejects_non_positive_inputs(measured: ModuleType, args: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        measured.scale_ratio(*args)
