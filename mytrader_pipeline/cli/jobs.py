"""``mytrader import|import-all|status|cancel|retry|schedules|api``: the service layer from the command line.

Each command talks to a running deployment (``--url`` or ``MYTRADER_DAGSTER_URL``). Exit codes: 0 done, 1 the job
failed or rejected rows or files, 2 a bad request (unknown market, path outside the data root, bad cron), 3 the
deployment or warehouse cannot be reached, 4 no such job or schedule, 5 not possible in the job's state.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from mytrader_pipeline.api.settings import ApiSettings
from mytrader_pipeline.core.limits import (
    BATCH_SIZE,
    GLOBAL_MAX_CONCURRENCY,
    MAX_CONCURRENCY,
    SLA_TARGET_MINUTES,
    Bounds,
)
from mytrader_pipeline.core.request_errors import (
    Conflict,
    DeploymentUnavailable,
    InvalidRequest,
    NotFound,
    RequestError,
)
from mytrader_pipeline.core.requests import AllMarketsImportRequest, MarketImportRequest, check_sla_target, parse_hms
from mytrader_pipeline.service.models import JobStatus, RetryPolicy
from mytrader_pipeline.service.settings import ServiceSettings

EXIT_CODES: dict[type[RequestError], int] = {InvalidRequest: 2, DeploymentUnavailable: 3, NotFound: 4, Conflict: 5}


def _operations(args: argparse.Namespace) -> Any:
    # Lazy for speed: the service layer loads Dagster (~3 s), which `mytrader --help` need not pay.
    from mytrader_pipeline.service.operations import Operations

    return Operations(ServiceSettings.from_settings(dagster_url=args.url))


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


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
    """Poll a job until it finishes: a redrawn progress bar on a terminal, a plain line per change otherwise."""
    tty = out.isatty() if tty is None else tty
    last = ""
    while True:
        status = get_status()
        if tty:
            width = 30
            filled = int(width * status.progress_percentage / 100)
            out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {_summary(status)}\x1b[K")
        else:
            line = _summary(status)
            if line != last:
                out.write(line + "\n")
            last = line
        out.flush()
        if status.finished:
            if tty:
                out.write("\n")
            return status
        time.sleep(poll_seconds)


def _finish(args: argparse.Namespace, service: Any, job_id: str) -> int:
    if not args.wait:
        _emit(args, {"jobId": job_id}, job_id)
        return 0
    status = follow(lambda: service.status(job_id), out=sys.stderr if args.json else sys.stdout, poll_seconds=args.poll)
    _emit(args, status.as_api(), job_details(status))
    return job_exit_code(status)


def _import(args: argparse.Namespace) -> int:
    service = _operations(args)
    request = MarketImportRequest(
        market=args.market,
        data_path=args.data_path,
        batch_size=args.batch_size,
        sla_target=args.sla_target,
        max_concurrency=args.max_concurrency,
        include_files=tuple(args.include or ()),
        exclude_files=tuple(args.exclude or ()),
        force=args.force,
    )
    return _finish(args, service, service.import_market(request))


def _all_markets_request(args: argparse.Namespace) -> AllMarketsImportRequest:
    return AllMarketsImportRequest(
        stock_scrapper_data_path=args.data_path,
        run_markets_in_parallel=not args.sequential,
        global_max_concurrency=args.global_max_concurrency,
        global_sla_target=args.global_sla_target,
        force=args.force,
    )


def _import_all(args: argparse.Namespace) -> int:
    service = _operations(args)
    return _finish(args, service, service.import_all_markets(_all_markets_request(args)))


def _status(args: argparse.Namespace) -> int:
    service = _operations(args)
    if args.watch:
        status = follow(lambda: service.status(args.job_id), out=sys.stderr if args.json else sys.stdout)
    else:
        status = service.status(args.job_id)
    _emit(args, status.as_api(), job_details(status))
    return job_exit_code(status) if status.finished else 0


def _cancel(args: argparse.Namespace) -> int:
    status = _operations(args).cancel(args.job_id)
    _emit(args, status.as_api(), f"cancel requested: {_summary(status)}")
    return 0


def _retry(args: argparse.Namespace) -> int:
    service = _operations(args)
    policy = RetryPolicy(
        max_retries=args.max_retries,
        initial_delay=args.initial_delay,
        backoff_multiplier=args.backoff_multiplier,
    )
    new_ids = service.retry(args.job_id, policy)
    if not args.wait:
        _emit(args, {"jobId": args.job_id, "retryJobIds": new_ids}, "\n".join(new_ids))
        return 0
    target = new_ids[0] if len(new_ids) == 1 else args.job_id
    return _finish(args, service, target)


def _schedules_add(args: argparse.Namespace) -> int:
    schedule = _operations(args).add_schedule(_all_markets_request(args), args.cron, args.time_zone)
    _emit(args, schedule.as_api(), f"{schedule.id} '{schedule.cron_expression}' {schedule.time_zone}")
    return 0


def _schedules_list(args: argparse.Namespace) -> int:
    schedules = [s.as_api() for s in _operations(args).list_schedules()]
    text = "\n".join(
        f"{s['recurringJobId']:<28} {s['cronExpression']:<16} {s['timeZone']:<18} next {s['nextExecution']}"
        for s in schedules
    )
    _emit(args, schedules, text or "no schedules")
    return 0


def _schedules_remove(args: argparse.Namespace) -> int:
    _operations(args).remove_schedule(args.schedule_id)
    _emit(args, {"removed": args.schedule_id}, f"removed {args.schedule_id}")
    return 0


def _api(args: argparse.Namespace) -> int:
    # Lazy for speed: the app loads FastAPI and the service layer (Dagster, ~3 s), which other commands need not pay.
    import uvicorn

    from mytrader_pipeline.api.app import create_app

    settings = ApiSettings.from_settings(dagster_url=args.url)
    if not settings.api_token:
        print("warning: MYTRADER_API_TOKEN is not set: calls that change state will be refused", file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``func`` with the service layer's errors printed and turned into their exit codes (``EXIT_CODES``)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except RequestError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return next((code for kind, code in EXIT_CODES.items() if isinstance(exc, kind)), 1)

    return run


def bounded(bounds: Bounds) -> Callable[[str], int]:
    """An argparse ``type``: a whole number within ``bounds`` (the job config's), else a usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value not in bounds:
            raise argparse.ArgumentTypeError(f"{value} is outside {bounds}")
        return value

    return parse


def duration(flag: str, *, sla: bool = False) -> Callable[[str], dt.timedelta]:
    """An argparse ``type``: an ``HH:MM:SS`` duration (for an SLA target: within the job config's minutes)."""

    def parse(text: str) -> dt.timedelta:
        try:
            value = parse_hms(text, flag)
            if sla:
                check_sla_target(value, flag)
        except InvalidRequest as exc:
            raise argparse.ArgumentTypeError(exc.message.removeprefix(f"{flag}: ")) from None
        return value

    return parse


def add_deployment_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--json``, as every command acting on the deployment takes them."""
    parser.add_argument("--url", help="the deployment's web server (env MYTRADER_DAGSTER_URL; http://127.0.0.1:3000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_wait_options(parser: argparse.ArgumentParser) -> None:
    """``--wait`` and ``--poll``: follow the launched job(s) until they end."""
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 1 if it fails")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status checks with --wait")


def _all_markets_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-path", help="the DATA folder (default: the data root)")
    parser.add_argument("--sequential", action="store_true", help="do not run markets in parallel")
    parser.add_argument(
        "--global-max-concurrency",
        type=bounded(GLOBAL_MAX_CONCURRENCY),
        help=f"cap on markets and on each market's files at once, {GLOBAL_MAX_CONCURRENCY} (default 8)",
    )
    parser.add_argument("--global-sla-target", type=duration("--global-sla-target"), help="HH:MM:SS (default 02:00:00)")
    parser.add_argument("--force", action="store_true", help="reload files whose content is unchanged")


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``mytrader`` parser."""
    imp = commands.add_parser("import", help="import one market's files on the deployment")
    imp.add_argument("market")
    imp.add_argument("--data-path", help="the market's folder, inside the data root")
    imp.add_argument("--batch-size", type=bounded(BATCH_SIZE), help=f"{BATCH_SIZE} (default: the market's batch_size)")
    imp.add_argument(
        "--max-concurrency",
        type=bounded(MAX_CONCURRENCY),
        help=f"{MAX_CONCURRENCY} (default: the market's max_concurrency)",
    )
    imp.add_argument(
        "--sla-target",
        type=duration("--sla-target", sla=True),
        help=f"HH:MM:SS, {SLA_TARGET_MINUTES} rounded up (default: the market's SLA)",
    )
    imp.add_argument("--include", action="append", help="only these files (name or glob; repeatable)")
    imp.add_argument("--exclude", action="append", help="not these files (name or glob; repeatable)")
    imp.add_argument("--force", action="store_true", help="reload files whose content is unchanged")
    add_deployment_options(imp)
    add_wait_options(imp)
    imp.set_defaults(func=guarded(_import))

    every = commands.add_parser(
        "import-all", help="import every market on the deployment (one import_all_markets run, one op per market)"
    )
    _all_markets_options(every)
    add_deployment_options(every)
    add_wait_options(every)
    every.set_defaults(func=guarded(_import_all))

    status = commands.add_parser("status", help="state and progress of a job")
    status.add_argument("job_id")
    status.add_argument("--watch", action="store_true", help="follow until the job ends")
    add_deployment_options(status)
    status.set_defaults(func=guarded(_status))

    cancel = commands.add_parser("cancel", help="stop a queued or running job")
    cancel.add_argument("job_id")
    add_deployment_options(cancel)
    cancel.set_defaults(func=guarded(_cancel))

    retry = commands.add_parser("retry", help="re-execute a failed or cancelled job from its failure")
    retry.add_argument("job_id")
    retry.add_argument("--max-retries", type=int, default=3)
    retry.add_argument(
        "--initial-delay", type=duration("--initial-delay"), default=dt.timedelta(minutes=1), help="HH:MM:SS"
    )
    retry.add_argument("--backoff-multiplier", type=float, default=2.0)
    add_deployment_options(retry)
    add_wait_options(retry)
    retry.set_defaults(func=guarded(_retry))

    schedules = commands.add_parser("schedules", help="recurring all-markets imports (cron + time zone)")
    sub = schedules.add_subparsers(dest="schedules_command", required=True)
    add = sub.add_parser("add", help="add a recurring all-markets import")
    add.add_argument("--cron", required=True, help="5-field cron expression, e.g. '0 2 * * *'")
    add.add_argument("--time-zone", default="UTC", help="IANA time zone, e.g. Europe/Istanbul")
    _all_markets_options(add)
    add_deployment_options(add)
    add.set_defaults(func=guarded(_schedules_add))
    listing = sub.add_parser("list", help="list recurring imports")
    add_deployment_options(listing)
    listing.set_defaults(func=guarded(_schedules_list))
    remove = sub.add_parser("remove", help="remove a recurring import")
    remove.add_argument("schedule_id")
    add_deployment_options(remove)
    remove.set_defaults(func=guarded(_schedules_remove))

    api = commands.add_parser("api", help="serve the REST API (/api/batch-processing/...)")
    api.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    api.add_argument("--port", type=int, default=5000)
    api.add_argument("--url", help="the deployment's web server (env MYTRADER_DAGSTER_URL)")
    api.set_defaults(func=_api)
