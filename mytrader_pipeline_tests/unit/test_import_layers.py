"""The layers hold: import-linter keeps pyproject.toml's contracts, and no import hides in a function below the CLI."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mytrader_pipeline"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``root`` (put first on the path, so no installed copy is analysed)."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        ("core/stats.py", "import dagster", "mytrader_pipeline.core.stats -> dagster"),
        ("markets.py", "import fastapi", "mytrader_pipeline.markets -> fastapi"),
        (
            "defs/user_schedules.py",
            "import mytrader_pipeline.service.operations",
            "mytrader_pipeline.defs.user_schedules -> mytrader_pipeline.service.operations",
        ),
        ("core/db.py", "import mytrader_pipeline.defs.jobs", "mytrader_pipeline.core.db -> mytrader_pipeline.defs"),
        (
            "service/status.py",
            "import mytrader_pipeline.runner",
            "mytrader_pipeline.service.status -> mytrader_pipeline.runner",
        ),
        (  # the runner stays free of Dagster: only the CLI reaches local_runs, when a file is to load
            "runner.py",
            "import mytrader_pipeline.local_runs",
            "mytrader_pipeline.runner -> mytrader_pipeline.local_runs",
        ),
    ],
)
def test_an_import_against_the_layers_breaks_a_contract_naming_it(
    tmp_path: Path, module: str, bad_import: str, broken: str
) -> None:
    """The contracts are not vacuous: one import against them, in a copy of the package, fails the check."""
    shutil.copytree(PACKAGE, tmp_path / "mytrader_pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "mytrader_pipeline" / module
    target.write_text(target.read_text("utf-8") + f"\n{bad_import}  # noqa\n", "utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout, result.stdout


def _imports_in_functions(path: Path) -> list[int]:
    """Line numbers of the import statements inside a function of ``path``."""
    found: list[int] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n.lineno for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return sorted(set(found))


def test_no_import_inside_a_function_below_the_cli() -> None:
    """Below the CLI an import in a function could only dodge a cycle; in the CLI it is lazy for speed, and says so.

    Nothing imports the CLI (the layers contract), so a lazy import there cannot hide a cycle; it keeps Dagster,
    SQLAlchemy and polars out of `mytrader --help`, and its module says so with a "Lazy for speed" comment.
    """
    hidden: list[str] = []
    unexplained: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = _imports_in_functions(path)
        name = path.relative_to(ROOT).as_posix()
        if lines and path.parent.name != "cli":
            hidden += [f"{name}:{line}" for line in lines]
        elif lines and "# Lazy for speed" not in path.read_text("utf-8"):
            unexplained.append(name)
    assert not hidden, f"imports inside functions below the CLI: {', '.join(hidden)}"
    assert not unexplained, f"lazy imports without a '# Lazy for speed' comment: {', '.join(unexplained)}"
