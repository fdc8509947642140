"""``mytrader stats``, ``mytrader health`` and ``mytrader alerts``: monitoring from the local Dagster instance."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from mytrader_pipeline.cli.common import database_url_option, json_option, print_table
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import default_data_root, default_database_url, get_settings

# Lazy for speed: each command imports what loads SQLAlchemy, polars or Dagster (1-3 s) when it runs, so that
# `mytrader --help` and the other commands need not pay for it.


def _engine(database_url: str | None) -> Any:
    from mytrader_pipeline.core.db import make_engine

    return make_engine(database_url or get_settings().database_url or default_database_url(), pool_size=2)


def _ready_engine(database_url: str | None) -> Any:
    from mytrader_pipeline.core.db import ensure_schema

    engine = _engine(database_url)
    ensure_schema(engine)
    return engine


def _registry() -> Any:
    return load_markets(get_settings().markets_file)


@click.command("stats")
@click.option("--start-date", required=True, metavar="YYYY-MM-DD", help="First day (UTC).")
@click.option("--end-date", metavar="YYYY-MM-DD", help="Last day, inclusive (default: the start date).")
@database_url_option()
@json_option
def stats_command(start_date: str, end_date: str | None, database_url: str | None, as_json: bool) -> int:
    """Statistics of the import jobs over a date range."""
    from mytrader_pipeline.defs.monitoring import stats_for
    from mytrader_pipeline.local_runs import local_instance

    start = dt.date.fromisoformat(start_date)
    end = dt.date.fromisoformat(end_date) if end_date else start
    stats = stats_for(local_instance(), _registry(), _ready_engine(database_url), start, end)
    if as_json:
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
        print(f"  {breach.first_seen:%Y-%m-%dT%H:%M:%S} {breach.severity:<8} {breach.alert_type:<16} {breach.message}")
    return 0


@click.command("health")
@database_url_option()
@click.option("--data-root", metavar="DIR", help="The data root (env MYTRADER_DATA_ROOT).")
@json_option
def health_command(database_url: str | None, data_root: str | None, as_json: bool) -> int:
    """Healthy, degraded or unhealthy, with reasons.

    Exit 1 when unhealthy.
    """
    from mytrader_pipeline.core.health import Status
    from mytrader_pipeline.definitions import build_defs
    from mytrader_pipeline.defs.monitoring_sources import collect_health
    from mytrader_pipeline.local_runs import local_instance

    registry = _registry()
    root = data_root or str(get_settings().data_root or default_data_root())
    try:
        instance = local_instance()
    except Exception:
        instance = None
    report = collect_health(instance, _engine(database_url), Path(root).resolve(), registry, build_defs(registry))
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.status.value.upper())
        print_table(
            [("status", "left"), ("check", "left"), ("reason", "left")],
            [(check.status.value, check.name, check.reason) for check in report.checks],
        )
    return 1 if report.status == Status.UNHEALTHY else 0


@click.command("alerts")
@click.option("--all", "show_all", is_flag=True, help="Include resolved alerts.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many, newest first.")
@database_url_option()
@json_option
def alerts_command(show_all: bool, limit: int, database_url: str | None, as_json: bool) -> int:
    """SLA alerts (active ones unless --all)."""
    from mytrader_pipeline.core.alerts import AlertStore

    alerts = AlertStore(_ready_engine(database_url)).list(active_only=not show_all, limit=limit)
    if as_json:
        print(json.dumps([a.as_json() for a in alerts], indent=2))
        return 0
    columns = [("id", "right"), ("state", "left"), ("severity", "left"), ("type", "left"), ("market", "left"),
               ("first seen", "left"), ("message", "left")]  # fmt: skip
    print_table(
        columns,
        [
            (
                a.id,
                "active" if a.active else "resolved",
                a.severity,
                a.alert_type,
                a.market or "-",
                f"{a.first_seen:%Y-%m-%d %H:%M:%S}",
                a.message,
            )
            for a in alerts
        ],
    )
    print(f"{len(alerts)} {'alert(s)' if show_all else 'active alert(s)'}")
    return 0


def register(group: click.Group) -> None:
    """Add ``stats``, ``health`` and ``alerts`` to the ``mytrader`` group."""
    for command in (stats_command, health_command, alerts_command):
        group.add_command(command)
