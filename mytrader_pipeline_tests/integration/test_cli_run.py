"""The quickstart's main job end to end: `mytrader run` as a process, on real files, into SQLite and PostgreSQL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import ensure_schema, make_engine

HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"


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


def test_a_file_that_only_grew_loads_its_new_lines_and_an_unchanged_tree_starts_no_run(
    data_root: Path, tmp_path: Path
) -> None:
    rows = "".join(f"KO,2024-01-{d:02},60,61,59,60.5,60.5,100\n" for d in range(2, 12))
    path = data_root / "NYSE" / "KO.csv"
    path.write_text(HEADER + rows)
    (data_root / "NYSE" / "PEP.csv").write_text(HEADER + rows.replace("KO", "PEP"))
    args = ["run", "--data-root", str(data_root), "--markets", "NYSE", "--json"]
    assert _mytrader(args, cwd=tmp_path).returncode == 0
    path.write_text(HEADER + rows + "KO,2024-01-12,60,61,59,60.5,60.5,100\nKO,2024-01-13,60,59,59,60.5,60.5,1\n")
    grown_run = _mytrader(args, cwd=tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert _imported("dagster", grown_run.stderr)  # a file to load: through Dagster
    grown = json.loads(grown_run.stdout)["NYSE"]
    assert (grown["files_loaded"], grown["files_skipped"], grown["rows_read"], grown["rows_rejected"]) == (1, 1, 2, 1)
    engine = make_engine(f"sqlite:///{tmp_path / '.mytrader' / 'warehouse.db'}")
    with engine.connect() as conn:
        audit = conn.execute(sa.text("SELECT source_file, load_mode, line_count FROM file_imports ORDER BY id")).all()
        line = conn.execute(sa.text("SELECT line_number FROM rejected_rows")).scalar_one()
    # The two files of the first run load on two threads (one group each): their audit rows come in either order.
    assert sorted(tuple(a) for a in audit[:2]) == [("NYSE/KO.csv", "full", 11), ("NYSE/PEP.csv", "full", 11)]
    assert [tuple(a) for a in audit[2:]] == [("NYSE/KO.csv", "append", 13)]
    assert line == 13  # numbered as a full read numbers it
    runs_before = len(list((tmp_path / ".mytrader" / "logs").glob("*.log")))
    assert runs_before == 2
    unchanged = _mytrader(args, cwd=tmp_path, PYTHONPROFILEIMPORTTIME="1")
    again = json.loads(unchanged.stdout)["NYSE"]
    assert (again["files_loaded"], again["files_skipped"]) == (0, 2)
    assert len(list((tmp_path / ".mytrader" / "logs").glob("*.log"))) == runs_before  # no Dagster run, no run log
    assert not _imported("dagster", unchanged.stderr)  # nothing to load: Dagster not even imported (seconds)


def _imported(module: str, importtime_stderr: str) -> bool:
    """Whether ``python -X importtime``'s report (on stderr) shows ``module`` imported."""
    return any(line.split("|")[-1].strip() == module for line in importtime_stderr.splitlines())


GOOD_ROW = "{s},2024-01-02,60,61,59,60.5,60.5,100\n"


def _good(path: Path) -> None:
    path.write_text(HEADER + GOOD_ROW.format(s=path.stem))


def _failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("NYSE/")]


def _registry_override(tmp_path: Path, **nyse: object) -> str:
    """A markets file giving NYSE ``nyse``'s settings (e.g. no wait between retries)."""
    path = tmp_path / "markets.yaml"
    path.write_text(json.dumps({"markets": [{"code": "NYSE", **nyse}]}))  # JSON is YAML
    return str(path)


def test_every_entry_of_a_hostile_folder_is_counted_once_with_its_reason(
    data_root: Path, tmp_path: Path, pg_url: str
) -> None:
    folder = data_root / "NYSE"
    for name in ("KO", "IBM"):
        _good(folder / f"{name}.csv")
    (folder / "BROKEN.csv").write_text("Date,Open,High,Low,Close\n2024-01-02,1,2,1,2\n")
    (folder / "EMPTY.csv").write_text("")
    _good(folder / "A,B.csv")
    _good(folder / "[x].csv")
    (folder / "DIR.csv").mkdir()
    os.mkfifo(folder / "PIPE.csv")
    _good(tmp_path / "OUTSIDE.csv")
    (folder / "ESCAPE.csv").symlink_to(tmp_path / "OUTSIDE.csv")
    (folder / "DANGLING.csv").symlink_to(folder / "GONE.csv")
    (folder / "README.txt").write_text("not the market's data: ignored\n")
    result = _mytrader(
        ["run", "--markets", "NYSE", "--json"],
        cwd=tmp_path,
        MYTRADER_DATA_ROOT=str(data_root),
        MYTRADER_DATABASE_URL=pg_url,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    nyse = json.loads(result.stdout)["NYSE"]
    assert nyse["files"] == len(list(folder.glob("*.csv"))) == 10
    assert nyse["files"] == nyse["files_loaded"] + nyse["files_skipped"] + nyse["files_failed"]
    assert (nyse["files_loaded"], nyse["files_skipped"], nyse["files_failed"]) == (2, 0, 8)
    classes = {source: reason.split(":")[0] for source, reason in nyse["failures"].items()}
    assert classes == {
        "NYSE/BROKEN.csv": "unknown_format",
        "NYSE/EMPTY.csv": "empty_file",
        "NYSE/A,B.csv": "invalid_file_name",
        "NYSE/[x].csv": "invalid_file_name",
        "NYSE/DIR.csv": "not_a_file",
        "NYSE/PIPE.csv": "not_a_file",
        "NYSE/ESCAPE.csv": "outside_data_root",
        "NYSE/DANGLING.csv": "not_a_file",
    }
    assert sorted(_failure_lines(result.stderr)) == sorted(
        f"{source}: {reason}" for source, reason in nyse["failures"].items()
    )
    assert "Traceback" not in result.stderr and "Stack Trace" not in result.stderr
    with make_engine(pg_url).connect() as conn:
        audit = conn.execute(sa.text("SELECT source_file, error_class FROM file_imports WHERE status = 'failed'"))
        assert dict(audit.all()) == classes  # every unloadable entry has its audit row too


def test_a_file_retried_after_a_transient_database_error_counts_once(
    data_root: Path, tmp_path: Path, pg_url: str
) -> None:
    _good(data_root / "NYSE" / "KO.csv")
    _good(data_root / "NYSE" / "IBM.csv")
    engine = make_engine(pg_url)
    ensure_schema(engine)
    with engine.begin() as conn:  # the first load to reach the table meets a serialization failure, once
        conn.execute(sa.text("CREATE SEQUENCE refusals"))  # a sequence is not rolled back with the failed load
        conn.execute(
            sa.text(
                "CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF nextval('refusals') = 1 THEN RAISE EXCEPTION 'transient' USING ERRCODE = '40001'; END IF; "
                "RETURN NULL; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse_once BEFORE INSERT ON historical_market_data "
                "FOR EACH STATEMENT EXECUTE FUNCTION refuse_once()"
            )
        )
    result = _mytrader(
        ["run", "--markets", "NYSE", "--json"],
        cwd=tmp_path,
        MYTRADER_DATA_ROOT=str(data_root),
        MYTRADER_DATABASE_URL=pg_url,
        MYTRADER_MARKETS_FILE=_registry_override(tmp_path, retry_delay_seconds=0),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    nyse = json.loads(result.stdout)["NYSE"]
    assert (nyse["files"], nyse["files_loaded"], nyse["files_failed"], nyse["files_skipped"]) == (2, 2, 0, 0)
    assert (nyse["rows_read"], nyse["rows_loaded"], nyse["failures"]) == (2, 2, {})
    with engine.connect() as conn:
        attempts = conn.execute(sa.text("SELECT status, error_class FROM file_imports ORDER BY id")).all()
    assert sorted(attempts, key=str) == sorted(
        [("failed", "database_conflict"), ("succeeded", None), ("succeeded", None)], key=str
    )  # three audit rows for two files: one was retried
    assert _failure_lines(result.stderr) == []


def test_a_bug_prints_one_line_pointing_to_the_stack_trace_in_the_run_log(
    data_root: Path, tmp_path: Path, pg_url: str
) -> None:
    _good(data_root / "NYSE" / "KO.csv")
    engine = make_engine(pg_url)
    ensure_schema(engine)
    with engine.begin() as conn:  # an error no class foresees: unexpected (retryable), every time
        conn.execute(
            sa.text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'a bug somewhere'; END $$"
            )
        )
        conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON historical_market_data EXECUTE FUNCTION refuse()"))
    result = _mytrader(
        ["run", "--markets", "NYSE"],
        cwd=tmp_path,
        MYTRADER_DATA_ROOT=str(data_root),
        MYTRADER_DATABASE_URL=pg_url,
        MYTRADER_MARKETS_FILE=_registry_override(tmp_path, retry_delay_seconds=0, max_retries=1),
    )
    assert result.returncode == 1
    (line,) = _failure_lines(result.stderr)
    assert line.startswith("NYSE/KO.csv: unexpected: ") and "a bug somewhere" in line
    log_file = Path(line.rsplit("(stack trace in ", 1)[1].removesuffix(")"))
    assert log_file.parent == tmp_path / ".mytrader" / "logs"
    assert "Traceback (most recent call last)" in log_file.read_text()
    assert "Traceback" not in result.stderr
    assert [x for x in result.stderr.splitlines() if x.startswith("attempt ")] == [
        next(x for x in result.stderr.splitlines() if x.startswith("attempt 1 of 2: unexpected"))
    ]  # the retry was announced once, as it happened


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret@127.0.0.1:5432/mt_no_such_database",
        "postgresql://postgres:s3cret@no-such-host.invalid:5432/mytrader",
    ],
    ids=["missing database", "unknown host"],
)
def test_a_wrong_database_stops_the_run_with_one_line_and_exit_3(data_root: Path, tmp_path: Path, url: str) -> None:
    _good(data_root / "NYSE" / "KO.csv")
    result = _mytrader(
        ["run", "--markets", "NYSE", "--database-url", url], cwd=tmp_path, MYTRADER_DATA_ROOT=str(data_root)
    )
    assert result.returncode == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # no retries, no progress, no traceback
    assert lines[0].startswith("mytrader: cannot use the database postgresql://postgres:***@")
    assert "database_config" in lines[0] and "s3cret" not in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / ".mytrader" / "dagster_home").exists()  # stopped before any run


def test_verbose_shows_the_wrong_database_s_traceback(data_root: Path, tmp_path: Path, pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/mt_no_such_database"
    result = _mytrader(["run", "--markets", "NYSE", "--database-url", url, "--verbose"], cwd=tmp_path)
    assert result.returncode == 3
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mytrader: cannot use the database")


@pytest.mark.postgres
def test_ctrl_c_stops_the_run_at_a_file_boundary_and_the_next_run_loads_the_rest(tmp_path: Path, pg_url: str) -> None:
    """polars swallows SIGINT unless a query runs (then it fails that query's file): ``mytrader run`` takes it back.
    Ctrl-C (twice, here) lets the files being loaded commit or roll back, starts nothing else, and exits 130."""
    from mytrader_pipeline.sampledata import generate_sample

    root = tmp_path / "DATA"
    generate_sample(root, seed=11, scale=0.5)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_HOME"))}
    args = ["run", "--data-root", str(root), "--database-url", pg_url, "--json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mytrader_pipeline.cli", *args],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = make_engine(pg_url)
    audit = "SELECT count(*) FROM file_imports WHERE status = 'succeeded'"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:  # until the first file is loaded
        try:
            with engine.connect() as conn:
                if conn.execute(sa.text(audit)).scalar_one():
                    break
        except sa.exc.ProgrammingError:  # the schema is not there yet
            pass
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # pressed again while stopping: still a clean stop
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-3000:]
    assert "still stopping" in err and "stopped by Ctrl-C" in err and "Traceback" not in err, err[-3000:]
    first = json.loads(out)
    loaded, total = sum(m["files_loaded"] for m in first.values()), sum(m["files"] for m in first.values())
    assert 0 < loaded < total, out
    assert all(m["files_failed"] == 0 for m in first.values()), out  # stopped files are not failures
    with engine.connect() as conn:
        statuses = set(conn.execute(sa.text("SELECT status FROM file_imports")).scalars())
    assert statuses == {"succeeded"}  # none left loading: each file committed whole or rolled back
    with dg.DagsterInstance.from_config(str(tmp_path / ".mytrader" / "dagster_home")) as instance:
        runs = instance.get_runs()
        statuses_of_runs = [run.status for run in runs]
        assert all(run.is_finished for run in runs) and dg.DagsterRunStatus.CANCELED in statuses_of_runs, (
            statuses_of_runs
        )

    second = _mytrader(args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    rest = json.loads(second.stdout)
    assert sum(m["files_loaded"] for m in rest.values()) == total - loaded
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM historical_market_data")).scalar_one()
    assert stored == sum(m["rows_loaded"] for summary in (first, rest) for m in summary.values())
    engine.dispose()
