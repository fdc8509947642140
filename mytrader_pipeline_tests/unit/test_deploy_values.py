"""The Helm values in deploy/ agree with the market registry, with deploy/dagster.yaml, and with each other."""

from pathlib import Path
from typing import Any

import yaml
from dagster._core.run_coordinator import RunCoordinator  # not re-exported at the top level
from dagster._serdes import ConfigurableClassData

from mytrader_pipeline.defs.run_coordinator import MarketRunCoordinator
from mytrader_pipeline.instance_config import GLOBAL_MAX_CONCURRENT_RUNS, render_instance_config
from mytrader_pipeline.markets import load_markets

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _values(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text("utf-8"))


def _deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def _helm_run_coordinator(values: dict[str, Any]) -> dict[str, Any]:
    """The ``run_coordinator`` block the chart writes into the instance's dagster.yaml for a CustomRunCoordinator."""
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == "CustomRunCoordinator"
    return coordinator["config"]["customRunCoordinator"]


def test_helm_run_coordinator_is_deploy_dagster_yamls_market_run_coordinator() -> None:
    """The chart's instance gets deploy/dagster.yaml's run_coordinator and concurrency blocks, unchanged."""
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text("utf-8"))
    values = _values("values.yaml")
    assert _helm_run_coordinator(values) == instance["run_coordinator"]
    assert values["additionalInstanceConfig"]["concurrency"] == instance["concurrency"]
    assert instance["run_coordinator"]["class"] == "MarketRunCoordinator"


def test_helm_run_queue_is_the_registry_one() -> None:
    concurrency = _values("values.yaml")["additionalInstanceConfig"]["concurrency"]
    assert concurrency["runs"]["max_concurrent_runs"] == GLOBAL_MAX_CONCURRENT_RUNS
    assert concurrency["runs"]["tag_concurrency_limits"] == [
        {"key": "market", "value": m.code, "limit": m.max_concurrency} for m in load_markets()
    ]


def test_helm_run_coordinator_config_builds_a_market_run_coordinator() -> None:
    """Dagster validates the values' coordinator config against MarketRunCoordinator's schema and builds it."""
    block = _helm_run_coordinator(_values("values.yaml"))
    data = ConfigurableClassData(block["module"], block["class"], yaml.safe_dump(block["config"]))
    coordinator = data.rehydrate(as_type=RunCoordinator)
    assert isinstance(coordinator, MarketRunCoordinator)
    assert (coordinator.dequeue_interval_seconds, coordinator.dequeue_use_threads, coordinator.dequeue_num_workers) == (
        2,
        True,
        4,
    )


def test_helm_webserver_and_daemon_run_the_code_image() -> None:
    """The webserver and the daemon import MarketRunCoordinator: they run the code location's image, same tag."""
    values = _values("values.yaml")
    code_image = _deployment(values)["image"]
    assert values["dagsterWebserver"]["image"] == code_image
    assert values["dagsterDaemon"]["image"] == code_image
    # The overlay keeps them (Helm merges maps): it sets no image of its own, and its deployment's is the same.
    celery = _values("values-celery.yaml")
    assert "dagsterWebserver" not in celery and "dagsterDaemon" not in celery
    assert _deployment(celery)["image"] == code_image


def test_helm_webserver_listens_on_an_unprivileged_port() -> None:
    """The code image runs as a non-root user: the webserver (on the service's port) and its probe use 8080."""
    webserver = _values("values.yaml")["dagsterWebserver"]
    assert webserver["service"]["port"] >= 1024
    assert webserver["readinessProbe"]["httpGet"]["port"] == webserver["service"]["port"]


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
