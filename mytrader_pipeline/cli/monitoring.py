"""``mytrader stats``, ``mytrader health`` and ``mytrader alerts``: monitoring from the local Dagster instance."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import default_data_root, default_database_url, get_settings

# Lazy for speed: each command imports what loads SQLAlchemy, polars or Dagster (1-3 s) when it runs, so that
# `mytrader --help` and the other commands need not pay for it.


def _engine(args: argparse.Namespace) -> Any:
    from mytrader_pipeline.core.db import make_engine

    return make_engine(args.database_url or get_settings().database_url or default_database_url(), pool_size=2)


def _ready_engine(args: argparse.Namespace) -> Any:
    from mytrader_pipeline.core.db import ensure_schema

    engine = _engine(args)
    ensure_schema(engine)
    return engine


def _registry() -> Any:
    return load_markets(get_settings().markets_file)


def _stats(args: argparse.Namespace) -> int:
    from mytrader_pipeline.defs.monitoring import stats_for
    from mytrader_pipeline.runner import local_instance

    start = dt.date.fromisoformat(args.start_date)
    end = dt.date.fromisoformat(args.end_date) if args.end_date else start
    stats = stats_for(local_instance(), _registry(), _ready_engine(args), start, end)
    if args.json:
        print(json.dumps(stats.as_json(), indent=2))
        return 0

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def num(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:,.1f}{unit}"

    print(f"jobs {stats.start_date} .. {stats.end_date}: {stats.total_jobs} total, {stats.successful_jobs} ok, "
          f"{stats.failed_jobs} failed, {stats.retrying_jobs} retrying, {stats.running_jobs} running, "
          f"{stats.sla_breached_jobs} over SLA")  # fmt: skip
    print(f"success rate {pct(stats.success_rate)}, SLA compliance {pct(stats.sla_compliance_rate)}")
    print(f"duration avg {num(stats.average_duration_seconds, ' s')}, p95 {num(stats.p95_duration_seconds, ' s')}")
    print(f"records {stats.records_processed:,}, rate {num(stats.average_processing_rate, ' rec/s')}")
    print("by market: " + (", ".join(f"{k} {v}" for k, v in stats.jobs_by_market.items()) or "-"))
    print("errors: " + (", ".join(f"{k} {v}" for k, v in stats.errors_by_type.items()) or "-"))
    for breach in stats.recent_breaches:
        print(f"  {breach['first_seen'][:19]} {breach['severity']:<8} {breach['alert_type']:<16} {breach['message']}")
    return 0


def _health(args: argparse.Namespace) -> int:
    from mytrader_pipeline.core.health import Status
    from mytrader_pipeline.definitions import build_defs
    from mytrader_pipeline.defs.monitoring_sources import collect_health
    from mytrader_pipeline.runner import local_instance

    registry = _registry()
    root = args.data_root or str(get_settings().data_root or default_data_root())
    try:
        instance = local_instance()
    except Exception:
        instance = None
    report = collect_health(instance, _engine(args), Path(root).resolve(), registry, build_defs(registry))
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.status.value.upper())
        for check in report.checks:
            print(f"  {check.status.value:<9} {check.name:<18} {check.reason}")
    return 1 if report.status == Status.UNHEALTHY else 0


def _alerts(args: argparse.Namespace) -> int:
    from mytrader_pipeline.core.alerts import AlertStore

    alerts = AlertStore(_ready_engine(args)).list(active_only=not args.all, limit=args.limit)
    if args.json:
        print(json.dumps([a.as_json() for a in alerts], indent=2))
        return 0
    print(f"{'id':>5} {'state':<8} {'severity':<8} {'type':<16} {'market':<7} {'first seen':<19} message")
    for a in alerts:
        state = "active" if a.active else "resolved"
        print(f"{a.id:>5} {state:<8} {a.severity:<8} {a.alert_type:<16} {a.market or '-':<7} "
              f"{a.first_seen:%Y-%m-%d %H:%M:%S} {a.message}")  # fmt: skip
    print(f"{len(alerts)} {'alert(s)' if args.all else 'active alert(s)'}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``stats``, ``health`` and ``alerts`` to the ``mytrader`` parser."""
    db_help = "the warehouse (env MYTRADER_DATABASE_URL)"
    stats = commands.add_parser("stats", help="monitoring statistics of the import jobs over a date range")
    stats.add_argument("--start-date", required=True, help="first day, YYYY-MM-DD (UTC)")
    stats.add_argument("--end-date", help="last day, inclusive (default: the start date)")
    stats.add_argument("--database-url", help=db_help)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_stats)

    health = commands.add_parser("health", help="healthy, degraded or unhealthy, with reasons (exit 1: unhealthy)")
    health.add_argument("--database-url", help=db_help)
    health.add_argument("--data-root", help="the data root (env MYTRADER_DATA_ROOT)")
    health.add_argument("--json", action="store_true", help="print JSON")
    health.set_defaults(func=_health)

    alerts = commands.add_parser("alerts", help="SLA alerts (active ones unless --all)")
    alerts.add_argument("--all", action="store_true", help="include resolved alerts")
    alerts.add_argument("--limit", type=int, default=100)
    alerts.add_argument("--database-url", help=db_help)
    alerts.add_argument("--json", action="store_true", help="print JSON")
    alerts.set_defaults(func=_alerts)
