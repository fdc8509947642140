"""The ``mytrader`` command's parsing, help, exit codes and error lines, through click's ``CliRunner``."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mytrader_pipeline.cli import cli, main
from mytrader_pipeline.cli import jobs as jobs_cli
from mytrader_pipeline.cli.common import print_table
from mytrader_pipeline.instance_config import render_instance_config
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.service.models import JobStatus

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


EVERY_COMMAND = list(_commands(cli))


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("MYTRADER_MARKETS_FILE", "MYTRADER_DAGSTER_URL", "MYTRADER_DATABASE_URL", "MYTRADER_DATA_ROOT"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_the_command_set_is_the_documented_one() -> None:
    assert sorted(" ".join(c) for c in EVERY_COMMAND) == sorted(
        [
            "generate-sample", "run", "db", "db upgrade", "instance-config", "import", "import-all", "status",
            "cancel", "retry", "schedules", "schedules add", "schedules list", "schedules remove", "api", "dlq",
            "dlq list", "dlq show", "dlq replay", "dlq discard", "stats", "health", "alerts", "rejects", "worker",
        ]
    )  # fmt: skip
    documented = Path(__file__).parents[2].joinpath("docs", "cli.md").read_text("utf-8")
    assert all(f"`{c[0]}" in documented for c in EVERY_COMMAND)


def test_top_level_help_lists_every_command_and_the_exit_codes(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert all(f"  {c[0]} " in result.output for c in EVERY_COMMAND if len(c) == 1)
    assert "3 deployment or warehouse" in result.output
    assert runner.invoke(cli, ["-h"]).output == result.output


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_every_command_has_help(runner: CliRunner, command: tuple[str, ...]) -> None:
    result = runner.invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {' '.join(command)}" in result.output or f"Usage: mytrader {' '.join(command)}" in (
        result.output
    )


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("run", ["--data-root", "--database-url", "--markets", "--force", "--json", "--verbose"]),
        ("import", ["--data-path", "--batch-size", "--max-concurrency", "--sla-target", "--include", "--exclude",
                    "--force", "--url", "--json", "--wait", "--poll"]),
        ("import-all", ["--data-path", "--sequential", "--global-max-concurrency", "--global-sla-target", "--force",
                        "--url", "--json", "--wait", "--poll"]),
        ("retry", ["--max-retries", "--initial-delay", "--backoff-multiplier", "--url", "--json", "--wait"]),
        ("status", ["--watch", "--url", "--json"]),
        ("api", ["--host", "--port", "--url"]),
        ("stats", ["--start-date", "--end-date", "--database-url", "--json"]),
        ("alerts", ["--all", "--limit", "--database-url", "--json"]),
    ],
)  # fmt: skip
def test_each_command_keeps_its_options(runner: CliRunner, command: str, flags: list[str]) -> None:
    output = runner.invoke(cli, [command, "--help"]).output
    assert [f for f in flags if f not in output] == []


def test_the_shared_option_blocks_are_the_same_everywhere(runner: CliRunner) -> None:
    """``--url``/``--json`` and ``--wait``/``--poll`` come from one definition, so their help reads the same."""

    def helps(name: str) -> set[str | None]:
        found: set[str | None] = set()
        for path in (["import"], ["import-all"], ["retry"], ["dlq", "replay"]):
            command: click.Command = cli
            for part in path:
                assert isinstance(command, click.Group)
                command = command.commands[part]
            found |= {p.help for p in command.params if isinstance(p, click.Option) and p.name == name}
        return found

    assert [len(helps(name)) for name in ("url", "as_json", "wait", "poll")] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "Usage: mytrader"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["import"], "Missing argument 'MARKET'"),
        (["import", "BIST", "--no-such-flag"], "No such option '--no-such-flag'"),
        (["schedules", "add"], "Missing option '--cron'"),
        (["dlq", "show", "seven"], "'seven' is not a valid integer"),
        (["dlq", "list", "--status", "lost"], "'lost' is not one of 'open', 'replayed', 'resolved', 'discarded'"),
        (["dlq", "discard", "1"], "Missing option '--reason'"),
        (["retry", "X", "--initial-delay", "soon"], "'--initial-delay': 'soon' is not a duration"),
        (["instance-config", "--write", "a", "--check", "b"], "--write and --check cannot be used together"),
    ],
)
def test_usage_errors_exit_2_before_contacting_anything(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err


def test_a_bad_markets_yaml_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "markets.yaml"
    bad.write_text("markets:\n  - code: BIST\n    colour: red\n  - [not, a, mapping\n", "utf-8")
    monkeypatch.setenv("MYTRADER_MARKETS_FILE", str(bad))
    for argv in (["instance-config"], ["run", "--database-url", "sqlite:///" + str(tmp_path / "w.db")]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.splitlines() == [f"error: bad market registry: {err.split(': ', 2)[2].rstrip()}"]
        assert str(bad) in err and "Traceback" not in err


def test_a_bad_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A setting the settings model refuses stops the command with one line naming it, not a traceback."""
    monkeypatch.setenv("MYTRADER_SENSOR_INTERVAL_SECONDS", "0")
    assert main(["status", "some-run", "--url", UNREACHABLE]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: bad setting: MYTRADER_SENSOR_INTERVAL_SECONDS: ")


def test_a_refused_request_prints_its_message_and_the_exit_code_of_its_kind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MYTRADER_DATABASE_URL", raising=False)
    code = main(["dlq", "replay", "1", "--url", UNREACHABLE])  # no warehouse named: DeploymentUnavailable
    assert code == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: a replay links its runs in the deployment's warehouse")


def test_instance_config_prints_writes_and_checks(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = render_instance_config(load_markets(None))
    printed = runner.invoke(cli, ["instance-config"])
    assert (printed.exit_code, printed.stdout) == (0, expected)
    assert main(["instance-config", "--check", "dagster.yaml"]) == 1  # missing: out of date
    assert main(["instance-config", "--write", "dagster.yaml"]) == 0
    assert (tmp_path / "dagster.yaml").read_text("utf-8") == expected
    assert main(["instance-config", "--check", "dagster.yaml"]) == 0


def test_generate_sample_prints_a_table_of_markets(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["generate-sample", str(tmp_path / "DATA"), "--scale", "0.1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["market", "files", "rows"]
    assert {line.split()[0] for line in lines[1:-1]} >= {"BIST", "NYSE", "total"}
    assert lines[-1] == f"written to {tmp_path / 'DATA'}"


def _status(state: str, percent: float) -> JobStatus:
    return JobStatus(
        job_id="run-1", job_type="MarketImport", state=state, created_at=dt.datetime(2026, 1, 1),
        started_at=None, completed_at=None, progress_percentage=percent, current_operation=None,
        files_done=int(percent / 25), files_total=4, files_failed=0, records_processed=100, records_total=None,
        processing_rate=10.0, error_message=None, retry_count=0, sla_target=None, is_sla_breached=False,
        child_job_ids=[], parent_job_id=None, market="BIST",
    )  # fmt: skip


def test_follow_prints_one_plain_line_per_change_when_not_a_terminal() -> None:
    statuses = iter([_status("Running", 25), _status("Running", 25), _status("Succeeded", 100)])
    out = io.StringIO()
    final = jobs_cli.follow(lambda: next(statuses), out=out, poll_seconds=0)
    assert final.state == "Succeeded"
    assert out.getvalue().splitlines() == [
        "run-1 Running 25% 1/4 files, 100 rows, 10 rows/s",
        "run-1 Succeeded 100% 4/4 files, 100 rows, 10 rows/s",
    ]


def test_follow_draws_a_progress_bar_on_a_terminal() -> None:
    statuses = iter([_status("Running", 50), _status("Succeeded", 100)])
    out = io.StringIO()
    jobs_cli.follow(lambda: next(statuses), out=out, poll_seconds=0, tty=True)
    drawn = out.getvalue()
    assert "\r" in drawn or "\x1b[" in drawn  # redrawn in place
    assert "━" in drawn and "run-1 Succeeded 100% 4/4 files, 100 rows, 10 rows/s" in drawn.split("\r")[-1]


def test_json_output_is_json_on_stdout_only(
    runner: CliRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "sqlite:///" + str(tmp_path / "warehouse.db")
    assert main(["alerts", "--json", "--database-url", url]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [] and err == ""
    assert main(["alerts", "--all", "--database-url", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 alert(s)"


def test_a_table_cell_is_printed_as_data_never_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    """A dead-letter message or alert holding ``[/x]`` or ``[bold]`` prints as written (rich would fail or style it)."""
    print_table([("id", "right"), ("message", "left")], [(1, "bad cell [/x] in [bold]IBM.csv[/bold]")])
    assert capsys.readouterr().out.splitlines()[1].split(maxsplit=1) == ["1", "bad cell [/x] in [bold]IBM.csv[/bold]"]
