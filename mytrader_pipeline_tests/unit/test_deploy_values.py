"""The Helm values in deploy/ agree with the market registry, with deploy/dagster.yaml, and with each other."""

from pathlib import Path
from typing import Any

import yaml

from mytrader_pipeline.instance_config import GLOBAL_MAX_CONCURRENT_RUNS, render_instance_config
from mytrader_pipeline.markets import load_markets

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _values(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text("utf-8"))


def _deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def test_helm_run_queue_is_the_registry_one() -> None:
    registry = load_markets()
    queue = _values("values.yaml")["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["maxConcurrentRuns"] == GLOBAL_MAX_CONCURRENT_RUNS
    assert queue["tagConcurrencyLimits"] == [
        {"key": "market", "value": m.code, "limit": m.max_concurrency} for m in registry
    ]


def test_helm_run_monitoring_and_retries_are_those_of_deploy_dagster_yaml() -> None:
    instance = yaml.safe_load(render_instance_config(load_markets()))
    daemon = _values("values.yaml")["dagsterDaemon"]
    monitoring = daemon["runMonitoring"]
    assert {
        "enabled": monitoring["enabled"],
        "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
        "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
    } == instance["run_monitoring"]
    # The chart cannot render retry_on_asset_or_op_failure: its own run_retries is off and the block is passed whole.
    assert daemon["runRetries"] == {"enabled": False}
    assert _values("values.yaml")["additionalInstanceConfig"]["run_retries"] == instance["run_retries"]


def test_celery_overlay_deployment_keeps_everything_of_the_base_one() -> None:
    """Helm replaces lists: the overlay's deployment entry must repeat the base entry, adding only Celery's env."""
    base = _deployment(_values("values.yaml"))
    celery = _deployment(_values("values-celery.yaml"))
    assert {k: v for k, v in celery.items() if k != "env"} == {k: v for k, v in base.items() if k != "env"}
    assert celery["env"][: len(base["env"])] == base["env"]
    added = {e["name"]: e["value"] for e in celery["env"][len(base["env"]) :]}
    assert added == {"MYTRADER_EXECUTOR": "celery", "MYTRADER_CELERY_BACKEND_URL": "rpc://"}


def test_user_deployment_sets_no_resources_that_would_override_the_run_pods() -> None:
    for name in ("values.yaml", "values-celery.yaml"):
        deployment = _deployment(_values(name))
        assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
        assert "resources" not in deployment, name
