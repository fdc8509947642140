"""``mytrader import|import-all|status|cancel|retry|schedules|api``: the service layer from the command line.

Each command talks to a running deployment (``--url`` or ``MYTRADER_DAGSTER_URL``). Exit codes: 0 done, 1 the job
failed or rejected rows or files, 2 a bad request (unknown market, path outside the data root, bad cron), 3 the
deployment or warehouse cannot be reached, 4 no such job or schedule, 5 not possible in the job's state.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from mytrader_pipeline.api.settings import ApiSettings
from mytrader_pipeline.cli.common import (
    BoundedInt,
    Duration,
    all_markets_options,
    deployment_options,
    emit,
    print_table,
    wait_options,
)
from mytrader_pipeline.core.limits import BATCH_SIZE, MAX_CONCURRENCY, SLA_TARGET_MINUTES
from mytrader_pipeline.core.requests import AllMarketsImportRequest, MarketImportRequest
from mytrader_pipeline.service.models import JobStatus, RetryPolicy
from mytrader_pipeline.service.settings import ServiceSettings


def _operations(url: str | None) -> Any:
    # Lazy for speed: the service layer loads Dagster (~3 s), which `mytrader --help` need not pay.
    from mytrader_pipeline.service.operations import Operations

    return Operations(ServiceSettings.from_settings(dagster_url=url))


def job_exit_code(status: JobStatus) -> int:
    """1 when the job did not succeed or any file or row was rejected."""
    if status.state in ("Failed", "Cancelled") or status.files_failed or status.records_rejected:
        return 1
    return 0


def _summary(status: JobStatus) -> str:
    total = "?" if status.files_total is None else str(status.files_total)
    line = (
        f"{status.job_id} {status.state} {status.progress_percentage:.0f}% {status.files_done}/{total} files, "
        f"{status.records_processed:,} rows, {status.processing_rate:,.0f} rows/s"
    )
    if status.files_failed or status.records_rejected:
        line += f", {status.files_failed} file(s) failed, {status.records_rejected:,} row(s) rejected"
    if status.is_sla_breached:
        line += " [SLA BREACHED]"
    return line


def job_details(status: JobStatus) -> str:
    """A job as a few lines of text: summary, type and market, times, current operation, error, relatives."""
    lines = [_summary(status), f"  type: {status.job_type}   market: {status.market or 'all'}"]
    lines.append(f"  created {status.created_at:%Y-%m-%d %H:%M:%S}Z, retries: {status.retry_count}")
    if status.current_operation:
        lines.append(f"  now: {status.current_operation}")
    if status.error_message:
        lines.append(f"  error: {status.error_message}")
    if status.child_job_ids:
        lines.append(f"  children: {', '.join(status.child_job_ids)}")
    if status.parent_job_id:
        lines.append(f"  parent: {status.parent_job_id}")
    return "\n".join(lines)


def follow(
    get_status: Callable[[], JobStatus], *, out: TextIO, poll_seconds: float = 1.0, tty: bool | None = None
) -> JobStatus:
    """Poll a job until it finishes: a rich progress bar on a terminal, a plain line per change otherwise."""
    if not (out.isatty() if tty is None else tty):
        last = ""
        while True:
            status = get_status()
            if (line := _summary(status)) != last:
                out.write(line + "\n")
                out.flush()
            last = line
            if status.finished:
                return status
            time.sleep(poll_seconds)
    console = Console(file=out, force_terminal=True, highlight=False)
    with Progress(BarColumn(), TextColumn("{task.description}"), console=console, auto_refresh=False) as bar:
        task = bar.add_task("", total=100)
        while True:
            status = get_status()
            bar.update(task, completed=status.progress_percentage, description=_summary(status))
            bar.refresh()
            if status.finished:
                return status
            time.sleep(poll_seconds)


def _finish(service: Any, job_id: str, *, as_json: bool, wait: bool, poll: float) -> int:
    if not wait:
        emit(as_json, {"jobId": job_id}, job_id)
        return 0
    status = follow(lambda: service.status(job_id), out=sys.stderr if as_json else sys.stdout, poll_seconds=poll)
    emit(as_json, status.as_api(), job_details(status))
    return job_exit_code(status)


@click.command("import")
@click.argument("market")
@click.option("--data-path", metavar="PATH", help="The market's folder, inside the data root.")
@click.option("--batch-size", type=BoundedInt(BATCH_SIZE), help=f"{BATCH_SIZE} (default: the market's batch_size).")
@click.option("--max-concurrency", type=BoundedInt(MAX_CONCURRENCY),
              help=f"{MAX_CONCURRENCY} (default: the market's max_concurrency).")  # fmt: skip
@click.option("--sla-target", type=Duration(sla=True),
              help=f"HH:MM:SS, {SLA_TARGET_MINUTES} rounded up (default: the market's SLA).")  # fmt: skip
@click.option("--include", metavar="GLOB", multiple=True, help="Only these files (name or glob; repeatable).")
@click.option("--exclude", metavar="GLOB", multiple=True, help="Not these files (name or glob; repeatable).")
@click.option("--force", is_flag=True, help="Reload files whose content is unchanged.")
@deployment_options
@wait_options
def import_command(
    market: str,
    data_path: str | None,
    batch_size: int | None,
    max_concurrency: int | None,
    sla_target: dt.timedelta | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    force: bool,
    url: str | None,
    as_json: bool,
    wait: bool,
    poll: float,
) -> int:
    """Import one market's files on the deployment."""
    service = _operations(url)
    request = MarketImportRequest(
        market=market,
        data_path=data_path,
        batch_size=batch_size,
        sla_target=sla_target,
        max_concurrency=max_concurrency,
        include_files=include,
        exclude_files=exclude,
        force=force,
    )
    return _finish(service, service.import_market(request), as_json=as_json, wait=wait, poll=poll)


def _all_markets_request(
    data_path: str | None,
    sequential: bool,
    global_max_concurrency: int | None,
    global_sla_target: dt.timedelta | None,
    force: bool,
) -> AllMarketsImportRequest:
    return AllMarketsImportRequest(
        stock_scrapper_data_path=data_path,
        run_markets_in_parallel=not sequential,
        global_max_concurrency=global_max_concurrency,
        global_sla_target=global_sla_target,
        force=force,
    )


@click.command("import-all")
@all_markets_options
@deployment_options
@wait_options
def import_all_command(url: str | None, as_json: bool, wait: bool, poll: float, **settings: Any) -> int:
    """Import every market on the deployment.

    One import_all_markets run, with one op per market.
    """
    service = _operations(url)
    job_id = service.import_all_markets(_all_markets_request(**settings))
    return _finish(service, job_id, as_json=as_json, wait=wait, poll=poll)


@click.command("status")
@click.argument("job_id")
@click.option("--watch", is_flag=True, help="Follow until the job ends.")
@deployment_options
def status_command(job_id: str, watch: bool, url: str | None, as_json: bool) -> int:
    """State and progress of a job.

    With --watch, follow it until it ends and exit 1 if it failed.
    """
    service = _operations(url)
    if watch:
        status = follow(lambda: service.status(job_id), out=sys.stderr if as_json else sys.stdout)
    else:
        status = service.status(job_id)
    emit(as_json, status.as_api(), job_details(status))
    return job_exit_code(status) if status.finished else 0


@click.command("cancel")
@click.argument("job_id")
@deployment_options
def cancel_command(job_id: str, url: str | None, as_json: bool) -> int:
    """Stop a queued or running job."""
    status = _operations(url).cancel(job_id)
    emit(as_json, status.as_api(), f"cancel requested: {_summary(status)}")
    return 0


@click.command("retry")
@click.argument("job_id")
@click.option("--max-retries", type=int, default=3, show_default=True,
              help="The new run's dagster/max_retries.")  # fmt: skip
@click.option("--initial-delay", type=Duration(), default="00:01:00", show_default=True, help="HH:MM:SS.")
@click.option("--backoff-multiplier", type=float, default=2.0, show_default=True)
@deployment_options
@wait_options
def retry_command(
    job_id: str,
    max_retries: int,
    initial_delay: dt.timedelta,
    backoff_multiplier: float,
    url: str | None,
    as_json: bool,
    wait: bool,
    poll: float,
) -> int:
    """Re-execute a failed or cancelled job from its failure."""
    service = _operations(url)
    policy = RetryPolicy(max_retries=max_retries, initial_delay=initial_delay, backoff_multiplier=backoff_multiplier)
    new_ids = service.retry(job_id, policy)
    if not wait:
        emit(as_json, {"jobId": job_id, "retryJobIds": new_ids}, "\n".join(new_ids))
        return 0
    target = new_ids[0] if len(new_ids) == 1 else job_id
    return _finish(service, target, as_json=as_json, wait=wait, poll=poll)


@click.group("schedules")
def schedules_group() -> None:
    """Recurring all-markets imports (cron + time zone)."""


@schedules_group.command("add")
@click.option("--cron", required=True, help="5-field cron expression, e.g. '0 2 * * *'.")
@click.option("--time-zone", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Istanbul.")
@all_markets_options
@deployment_options
def schedules_add_command(cron: str, time_zone: str, url: str | None, as_json: bool, **settings: Any) -> int:
    """Add a recurring all-markets import."""
    schedule = _operations(url).add_schedule(_all_markets_request(**settings), cron, time_zone)
    emit(as_json, schedule.as_api(), f"{schedule.id} '{schedule.cron_expression}' {schedule.time_zone}")
    return 0


@schedules_group.command("list")
@deployment_options
def schedules_list_command(url: str | None, as_json: bool) -> int:
    """List recurring imports."""
    schedules = [s.as_api() for s in _operations(url).list_schedules()]
    if as_json:
        emit(as_json, schedules, "")
    elif not schedules:
        print("no schedules")
    else:
        print_table(
            [("id", "left"), ("cron", "left"), ("time zone", "left"), ("next", "left")],
            [(s["recurringJobId"], s["cronExpression"], s["timeZone"], s["nextExecution"]) for s in schedules],
        )
    return 0


@schedules_group.command("remove")
@click.argument("schedule_id")
@deployment_options
def schedules_remove_command(schedule_id: str, url: str | None, as_json: bool) -> int:
    """Remove a recurring import."""
    _operations(url).remove_schedule(schedule_id)
    emit(as_json, {"removed": schedule_id}, f"removed {schedule_id}")
    return 0


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (127.0.0.1: this machine only).")
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--url", metavar="URL", help="The deployment's web server (env MYTRADER_DAGSTER_URL).")
def api_command(host: str, port: int, url: str | None) -> int:
    """Serve the REST API (/api/batch-processing/...)."""
    # Lazy for speed: the app loads FastAPI and the service layer (Dagster, ~3 s), which other commands need not pay.
    import uvicorn

    from mytrader_pipeline.api.app import create_app

    settings = ApiSettings.from_settings(dagster_url=url)
    if not settings.api_token:
        print("warning: MYTRADER_API_TOKEN is not set: calls that change state will be refused", file=sys.stderr)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return 0


def register(group: click.Group) -> None:
    """Add this module's commands to the ``mytrader`` group."""
    for command in (
        import_command,
        import_all_command,
        status_command,
        cancel_command,
        retry_command,
        schedules_group,
        api_command,
    ):
        group.add_command(command)
