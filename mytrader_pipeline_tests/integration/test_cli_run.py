"""The quickstart's main job end to end: `mytrader run` as a process, on real files, into SQLite and PostgreSQL."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from mytrader_pipeline.core.db import make_engine


def _mytrader(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_HOME"))}
    return subprocess.run(
        [sys.executable, "-m", "mytrader_pipeline.cli", *args],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_loads_every_file_of_every_market_into_the_embedded_sqlite_default(
    sample_root: Path, tmp_path: Path
) -> None:
    result = _mytrader(["run", "--data-root", str(sample_root), "--json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert set(summary) == {"BIST", "CRYPTO", "NASDAQ", "NYSE"}
    files_on_disk = {
        code: len(list((sample_root / folder).glob("*.csv")))
        for code, folder in [("BIST", "BIST"), ("CRYPTO", "Crypto"), ("NASDAQ", "NASDAQ"), ("NYSE", "NYSE")]
    }
    for code, market in summary.items():
        assert market["files"] == market["files_loaded"] == files_on_disk[code]
        assert market["rows_read"] == market["rows_loaded"] + market["rows_rejected"]
        assert market["rows_loaded"] > 0
    engine = make_engine(f"sqlite:///{tmp_path / '.mytrader' / 'warehouse.db'}")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM historical_market_data")).scalar_one()
    assert stored == sum(m["rows_loaded"] for m in summary.values())
    assert (tmp_path / ".mytrader" / "dagster_home").is_dir()  # runs went through a persistent Dagster instance


def test_run_exits_nonzero_and_names_the_file_when_one_fails(data_root: Path, tmp_path: Path, pg_url: str) -> None:
    header = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
    (data_root / "NYSE" / "KO.csv").write_text(header + "KO,2024-01-02,60,61,59,60.5,60.5,100\n")
    (data_root / "NYSE" / "BROKEN.csv").write_text("Date,Open,High,Low,Close\n2024-01-02,1,2,1,2\n")
    result = _mytrader(
        ["run", "--markets", "NYSE", "--json"],
        cwd=tmp_path,
        MYTRADER_DATA_ROOT=str(data_root),
        MYTRADER_DATABASE_URL=pg_url,
    )
    assert result.returncode == 1
    nyse = json.loads(result.stdout)["NYSE"]
    assert nyse["files"] == 2 and nyse["files_failed"] == 1 and nyse["rows_loaded"] == 1
    assert nyse["files_loaded"] == 1 and nyse["files_skipped"] == 0
    assert "NYSE/BROKEN.csv" in nyse["failures"]
    assert "unknown_format" in nyse["failures"]["NYSE/BROKEN.csv"]


def test_run_without_a_data_root_generates_the_sample_tree(tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / ".mytrader", ignore_errors=True)
    result = _mytrader(["run", "--markets", "CRYPTO", "--json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["CRYPTO"]["files"] == 12
    assert (tmp_path / ".mytrader" / "data" / "Crypto").is_dir()


def test_a_second_run_skips_unchanged_files_and_force_reloads_without_writing(data_root: Path, tmp_path: Path) -> None:
    header = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
    (data_root / "NYSE" / "KO.csv").write_text(header + "KO,2024-01-02,60,61,59,60.5,60.5,100\n")
    args = ["run", "--data-root", str(data_root), "--markets", "NYSE", "--json"]
    assert _mytrader(args, cwd=tmp_path).returncode == 0
    again = json.loads(_mytrader(args, cwd=tmp_path).stdout)["NYSE"]
    assert (again["files"], again["files_loaded"], again["files_skipped"], again["rows_read"]) == (1, 0, 1, 0)
    forced = json.loads(_mytrader([*args, "--force"], cwd=tmp_path).stdout)["NYSE"]
    assert (forced["files_loaded"], forced["rows_loaded"]) == (1, 1)
    engine = make_engine(f"sqlite:///{tmp_path / '.mytrader' / 'warehouse.db'}")
    with engine.connect() as conn:
        written = conn.execute(sa.text("SELECT rows_written FROM file_imports ORDER BY id")).scalars().all()
    assert written == [1, 0]  # the forced reload of an unchanged file wrote nothing
