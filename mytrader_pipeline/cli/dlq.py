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

import dataclasses
import datetime as dt
import getpass
import sys
from typing import Any

import click

from mytrader_pipeline.cli.common import (
    database_url_option,
    deployment_options,
    emit,
    json_option,
    print_table,
    wait_options,
)
from mytrader_pipeline.cli.jobs import follow, job_details, job_exit_code
from mytrader_pipeline.core.request_errors import DeploymentUnavailable
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline.settings import default_database_url


def _operations(database_url: str | None, url: str | None = None, *, deployment: bool = False) -> Any:
    """The service layer on the warehouse of ``--database-url`` (and, with ``deployment``, on ``--url``)."""
    # Lazy for speed: the service layer loads Dagster (~3 s), which `mytrader --help` need not pay.
    from mytrader_pipeline.service.operations import Operations

    settings = ServiceSettings.from_settings(dagster_url=url)
    database_url = database_url or settings.database_url
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


@click.group("dlq")
def dlq_group() -> None:
    """The dead-letter queue of failed imports.

    list, show and discard use the warehouse only; replay launches runs on the deployment and links them to the
    item in the deployment's warehouse. Exit codes: 0 done, 1 a replay run failed (--wait), 2 bad request, 3
    deployment or warehouse unreachable, 4 no such item, 5 not possible in the item's state.
    """


item_id_argument = click.argument("item_id", metavar="ID", type=int)


@dlq_group.command("list")
@click.option("--market", help="Only this market's items.")
@click.option(
    "--status", type=click.Choice(["open", "replayed", "resolved", "discarded"]), help="Only items in this state."
)
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--page-size", type=int, default=50, show_default=True)
@database_url_option()
@json_option
def list_command(market: str | None, status: str | None, page: int, page_size: int, database_url: str | None,
                 as_json: bool) -> int:  # fmt: skip
    """Items, newest first."""
    found = _operations(database_url).dlq_list(page, page_size, market, status).model_dump(mode="json")
    if as_json:
        emit(as_json, found, "")
        return 0
    columns = [("id", "right"), ("status", "left"), ("market", "left"), ("error class", "left"), ("files", "right"),
               ("last failure", "left"), ("message", "left")]  # fmt: skip
    print_table(
        columns,
        [
            (
                i["id"],
                i["status"],
                i["market"],
                i["error_class"],
                len(i["partition_keys"]),
                _when(i["last_failure_at"]),
                i["message"][:80],
            )
            for i in found["items"]
        ],
    )
    print(f"page {found['page']} ({len(found['items'])} of {found['total']} item(s))")
    return 0


@dlq_group.command("show")
@item_id_argument
@click.option("--trace", is_flag=True, help="Print the stack trace too.")
@database_url_option()
@json_option
def show_command(item_id: int, trace: bool, database_url: str | None, as_json: bool) -> int:
    """One item in full."""
    item = _operations(database_url).dlq_show(item_id).model_dump(mode="json")
    emit(as_json, item, _item_text(item, trace=trace))
    return 0


@dlq_group.command("replay")
@item_id_argument
@database_url_option("none: the deployment's warehouse must be named")
@deployment_options
@wait_options
def replay_command(item_id: int, database_url: str | None, url: str | None, as_json: bool, wait: bool,
                   poll: float) -> int:  # fmt: skip
    """Re-import only the item's failed files: runs launched on the deployment, linked to the item."""
    service = _operations(database_url, url, deployment=True)
    item = service.dlq_replay(item_id).model_dump(mode="json")
    if not wait:
        emit(as_json, item, _item_text(item))
        return 0
    out = sys.stderr if as_json else sys.stdout
    statuses = [
        follow(lambda run_id=run_id: service.status(run_id), out=out, poll_seconds=poll)
        for run_id in item["replay_run_ids"]
    ]
    # resolved (or reopened) by the deployment's sensors shortly after the runs end
    item = service.dlq_show(item_id).model_dump(mode="json")
    text = "\n".join([_item_text(item), *(job_details(s) for s in statuses)])
    emit(as_json, {**item, "replayJobs": [s.as_api() for s in statuses]}, text)
    return max((job_exit_code(s) for s in statuses), default=0)


@dlq_group.command("discard")
@item_id_argument
@click.option("--reason", required=True, help="Why nobody will fix it.")
@click.option("--by", help="Who discards it (default: the current user).")
@database_url_option()
@json_option
def discard_command(item_id: int, reason: str, by: str | None, database_url: str | None, as_json: bool) -> int:
    """Close an item nobody will fix, with the reason."""
    item = _operations(database_url).dlq_discard(item_id, reason, by or getpass.getuser()).model_dump(mode="json")
    emit(as_json, item, _item_text(item))
    return 0


def register(group: click.Group) -> None:
    """Add ``mytrader dlq ...`` to the ``mytrader`` group."""
    group.add_command(dlq_group)
