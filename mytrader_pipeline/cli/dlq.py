"""``mytrader dlq list|show|replay|discard``: the dead-letter queue, through the service layer the REST API uses.

Every subcommand calls the same operations as the REST API's ``/dead-letter-queue`` endpoints (``Operations``).
``list``, ``show`` and ``discard`` read and write the warehouse only (``--database-url``, else
``MYTRADER_DATABASE_URL``, else the local SQLite warehouse). ``replay`` launches the runs on the deployment
(``--url``, else ``MYTRADER_DAGSTER_URL``, else http://127.0.0.1:3000) and links them to the item in the
deployment's warehouse, which must be named (``--database-url`` or ``MYTRADER_DATABASE_URL``); the deployment's
sensors then resolve the item, or reopen it if a replay run fails. Exit codes as for the other commands: 0 done,
1 a replay run failed (``--wait``), 2 bad request, 3 deployment or warehouse unreachable, 4 no such item, 5 not
possible in the item's state.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import sys
from typing import Any

from mytrader_pipeline.cli.jobs import (
    add_deployment_options,
    add_wait_options,
    follow,
    guarded,
    job_details,
    job_exit_code,
)
from mytrader_pipeline.core.request_errors import DeploymentUnavailable
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline.settings import default_database_url


def _operations(args: argparse.Namespace, *, deployment: bool = False) -> Any:
    """The service layer on the warehouse of ``--database-url`` (and, with ``deployment``, on ``--url``)."""
    # Lazy for speed: the service layer loads Dagster (~3 s), which `mytrader --help` need not pay.
    from mytrader_pipeline.service.operations import Operations

    settings = ServiceSettings.from_settings(dagster_url=getattr(args, "url", None))
    database_url = args.database_url or settings.database_url
    if database_url is None and deployment:
        raise DeploymentUnavailable(
            "a replay links its runs in the deployment's warehouse: give --database-url or set MYTRADER_DATABASE_URL"
        )
    return Operations(dataclasses.replace(settings, database_url=database_url or default_database_url()))


def _when(value: str | None) -> str:
    return dt.datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _item_text(item: dict[str, Any], trace: bool = False) -> str:
    lines = [
        f"item {item['id']}: {item['status']}  {item['market']}  {item['error_class']}  "
        f"(retryable: {item['retryable']})",
        f"  job {item['job_name']}, run {item['run_id']}; runs {', '.join(item['run_ids'])}",
        f"  attempts {item['attempts']}; failed first {_when(item['first_failure_at'])}, "
        f"last {_when(item['last_failure_at'])}",
        f"  message: {item['message']}",
    ]
    failed_files = item.get("failed_files") or {}
    lines += [f"  file {k}: {failed_files.get(k, '(run failed before naming it)')}" for k in item["partition_keys"]]
    if item["replay_run_ids"]:
        lines.append(f"  replayed {_when(item['replayed_at'])} by run(s) {', '.join(item['replay_run_ids'])}")
    if item["resolved_at"]:
        lines.append(f"  resolved {_when(item['resolved_at'])} by run {item['resolved_by_run_id']}")
    if item["discarded_at"]:
        lines.append(f"  discarded {_when(item['discarded_at'])} by {item['discarded_by']}: {item['discard_reason']}")
    if trace and item.get("stack_trace"):
        lines.append(item["stack_trace"])
    return "\n".join(lines)


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


def _list(args: argparse.Namespace) -> int:
    page = _operations(args).dlq_list(args.page, args.page_size, args.market, args.status)
    rows = [f"{'id':>5} {'status':<9} {'market':<7} {'error class':<18} {'files':>5} {'last failure':<20} message"]
    rows += [
        f"{i['id']:>5} {i['status']:<9} {i['market']:<7} {i['error_class']:<18} {len(i['partition_keys']):>5} "
        f"{_when(i['last_failure_at']):<20} {i['message'][:80]}"
        for i in page["items"]
    ]
    rows.append(f"page {page['page']} ({len(page['items'])} of {page['total']} item(s))")
    _emit(args, page, "\n".join(rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    item = _operations(args).dlq_show(args.id)
    _emit(args, item, _item_text(item, trace=args.trace))
    return 0


def _replay(args: argparse.Namespace) -> int:
    service = _operations(args, deployment=True)
    item = service.dlq_replay(args.id)
    if not args.wait:
        _emit(args, item, _item_text(item))
        return 0
    out = sys.stderr if args.json else sys.stdout
    statuses = [
        follow(lambda run_id=run_id: service.status(run_id), out=out, poll_seconds=args.poll)
        for run_id in item["replay_run_ids"]
    ]
    item = service.dlq_show(args.id)  # resolved (or reopened) by the deployment's sensors shortly after the runs end
    text = "\n".join([_item_text(item), *(job_details(s) for s in statuses)])
    _emit(args, {**item, "replayJobs": [s.as_api() for s in statuses]}, text)
    return max((job_exit_code(s) for s in statuses), default=0)


def _discard(args: argparse.Namespace) -> int:
    item = _operations(args).dlq_discard(args.id, args.reason, args.by or getpass.getuser())
    _emit(args, item, _item_text(item))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``mytrader dlq ...`` to the ``mytrader`` parser."""
    dlq = commands.add_parser("dlq", help="the dead-letter queue of failed imports")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)

    def warehouse(parser: argparse.ArgumentParser, default: str) -> None:
        parser.add_argument(
            "--database-url", help=f"the warehouse holding the queue (env MYTRADER_DATABASE_URL; default {default})"
        )

    def local(parser: argparse.ArgumentParser) -> None:
        warehouse(parser, "the local SQLite warehouse")
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    listing = sub.add_parser("list", help="items, newest first")
    listing.add_argument("--market")
    listing.add_argument("--status", choices=["open", "replayed", "resolved", "discarded"])
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--page-size", type=int, default=50)
    local(listing)
    listing.set_defaults(func=guarded(_list))

    show = sub.add_parser("show", help="one item in full")
    show.add_argument("id", type=int)
    show.add_argument("--trace", action="store_true", help="print the stack trace too")
    local(show)
    show.set_defaults(func=guarded(_show))

    replay = sub.add_parser(
        "replay", help="re-import only the item's failed files: runs launched on the deployment, linked to the item"
    )
    replay.add_argument("id", type=int)
    warehouse(replay, "none: the deployment's warehouse must be named")
    add_deployment_options(replay)
    add_wait_options(replay)
    replay.set_defaults(func=guarded(_replay))

    discard = sub.add_parser("discard", help="close an item nobody will fix, with the reason")
    discard.add_argument("id", type=int)
    discard.add_argument("--reason", required=True)
    discard.add_argument("--by", help="who discards it (default: the current user)")
    local(discard)
    discard.set_defaults(func=guarded(_discard))
