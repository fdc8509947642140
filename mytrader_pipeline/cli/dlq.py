"""``mytrader dlq list|show ID|replay ID|discard ID --reason TEXT``: the dead-letter queue of failed imports."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from mytrader_pipeline.settings import default_data_root, default_database_url


def _store(args: argparse.Namespace) -> Any:
    from mytrader_pipeline.core.db import ensure_schema, make_engine
    from mytrader_pipeline.core.dlq import DeadLetterStore

    url = args.database_url or os.environ.get("MYTRADER_DATABASE_URL") or default_database_url()
    engine = make_engine(url, pool_size=2)
    ensure_schema(engine)
    return DeadLetterStore(engine)


def _print_item(item: Any, as_json: bool, trace: bool = False) -> None:
    if as_json:
        print(json.dumps(item.as_json(), indent=2, default=str))
        return
    print(f"item {item.id}: {item.status}  {item.market}  {item.error_class}  (retryable: {item.retryable})")
    print(f"  job {item.job_name}, run {item.run_id}; runs {', '.join(item.run_ids)}")
    print(f"  attempts {item.attempts}; failed first {item.first_failure_at}, last {item.last_failure_at}")
    print(f"  message: {item.message}")
    for key in item.partition_keys:
        print(f"  file {key}: {item.failed_files.get(key, '(run failed before naming it)')}")
    if item.replay_run_ids:
        print(f"  replayed {item.replayed_at} by run(s) {', '.join(item.replay_run_ids)}")
    if item.resolved_at:
        print(f"  resolved {item.resolved_at} by run {item.resolved_by_run_id}")
    if item.discarded_at:
        print(f"  discarded {item.discarded_at} by {item.discarded_by}: {item.discard_reason}")
    if item.stack_trace and trace:
        print(item.stack_trace)


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from mytrader_pipeline.core.dlq import DeadLetterError, ItemNotFound

        try:
            return int(fn(args))
        except ItemNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        except DeadLetterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _list(args: argparse.Namespace) -> int:
    page = _store(args).list(page=args.page, page_size=args.page_size, market=args.market, status=args.status)
    if args.json:
        print(json.dumps(page.as_json(), indent=2, default=str))
        return 0
    print(f"{'id':>5} {'status':<9} {'market':<7} {'error class':<18} {'files':>5} {'last failure':<20} message")
    for item in page.items:
        print(
            f"{item.id:>5} {item.status:<9} {item.market:<7} {item.error_class:<18} {len(item.partition_keys):>5} "
            f"{item.last_failure_at:%Y-%m-%d %H:%M:%S}  {item.message[:80]}"
        )
    print(f"page {page.page} ({len(page.items)} of {page.total} item(s))")
    return 0


def _show(args: argparse.Namespace) -> int:
    _print_item(_store(args).get(args.id), args.json, trace=args.trace)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from mytrader_pipeline.definitions import build_defs
    from mytrader_pipeline.defs.failure import in_process_launcher, replay_item
    from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
    from mytrader_pipeline.markets import load_markets
    from mytrader_pipeline.runner import local_instance

    store = _store(args)
    url = args.database_url or os.environ.get("MYTRADER_DATABASE_URL") or default_database_url()
    data_root = Path(args.data_root or os.environ.get("MYTRADER_DATA_ROOT") or default_data_root()).resolve()
    registry = load_markets(os.environ.get("MYTRADER_MARKETS_FILE") or None)
    defs = build_defs(
        registry,
        resource_overrides={
            "warehouse": WarehouseResource(database_url=url),
            "data_root": DataRootResource(data_root=str(data_root)),
        },
    )
    instance = local_instance()
    item = replay_item(instance, registry, store, args.id, in_process_launcher(defs, instance, registry, store))
    _print_item(item, args.json)
    return 0 if item.status == "resolved" else 1


def _discard(args: argparse.Namespace) -> int:
    item = _store(args).discard(args.id, args.reason, args.by or getpass.getuser())
    _print_item(item, args.json)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``mytrader dlq ...`` to the ``mytrader`` parser."""
    dlq = commands.add_parser("dlq", help="the dead-letter queue of failed imports")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--database-url", help="the warehouse holding the queue (env MYTRADER_DATABASE_URL)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    listing = sub.add_parser("list", help="items, newest first")
    listing.add_argument("--market")
    listing.add_argument("--status", choices=["open", "replayed", "resolved", "discarded"])
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--page-size", type=int, default=50)
    common(listing)
    listing.set_defaults(func=_guard(_list))

    show = sub.add_parser("show", help="one item in full")
    show.add_argument("id", type=int)
    show.add_argument("--trace", action="store_true", help="print the stack trace too")
    common(show)
    show.set_defaults(func=_guard(_show))

    replay = sub.add_parser("replay", help="re-import only the item's failed files (in this process)")
    replay.add_argument("id", type=int)
    replay.add_argument("--data-root", help="folder with the market folders (env MYTRADER_DATA_ROOT)")
    common(replay)
    replay.set_defaults(func=_guard(_replay))

    discard = sub.add_parser("discard", help="close an item nobody will fix, with the reason")
    discard.add_argument("id", type=int)
    discard.add_argument("--reason", required=True)
    discard.add_argument("--by", help="who discards it (default: the current user)")
    common(discard)
    discard.set_defaults(func=_guard(_discard))
