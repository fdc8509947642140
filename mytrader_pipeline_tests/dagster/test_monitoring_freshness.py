"""Freshness policies derived from the registry and the nightly schedule, applied to every market's asset."""

import datetime as dt

import dagster as dg

from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.monitoring import MonitoringSettings, freshness_policy
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import Settings


def test_each_market_must_load_between_the_schedule_and_its_sla_deadline() -> None:
    graph = build_defs().resolve_asset_graph()
    policies = {m.code: graph.get(dg.AssetKey(m.asset_name)).freshness_policy for m in load_markets()}

    deadlines = {code: policy.deadline_cron for code, policy in policies.items()}  # type: ignore[union-attr]
    assert deadlines == {"BIST": "45 2 * * *", "CRYPTO": "20 2 * * *", "NASDAQ": "25 2 * * *", "NYSE": "25 2 * * *"}
    assert policies["BIST"].lower_bound_delta == dt.timedelta(minutes=45)  # type: ignore[union-attr]


def test_the_policy_follows_a_configured_schedule() -> None:
    settings = MonitoringSettings.from_settings(Settings(daily_import_cron="30 23 * * 1-5"))
    policy = freshness_policy(load_markets().get("CRYPTO"), settings.schedule)
    assert policy.deadline_cron == "50 23 * * 1,2,3,4,5"  # type: ignore[attr-defined]
