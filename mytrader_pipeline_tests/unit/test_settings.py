"""The settings: every variable's name and default, parsing, errors naming the variable, read once, documented."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mytrader_pipeline.core.sla import SlaThresholds
from mytrader_pipeline.defs.executors import CELERY_MAX_FILES_PER_RUN
from mytrader_pipeline.defs.monitoring import DEFAULT_INTERVAL_SECONDS as SLA_INTERVAL_SECONDS
from mytrader_pipeline.defs.monitoring import MonitoringSettings
from mytrader_pipeline.defs.orchestration import OrchestrationSettings
from mytrader_pipeline.defs.schedules import DAILY_IMPORT_CRON
from mytrader_pipeline.defs.sensors import DEFAULT_INTERVAL_SECONDS, DEFAULT_MAX_FILES_PER_RUN, max_files_per_run
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline.settings import Settings, SettingsError, env_var, get_settings, settings_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with none of our variables set."""
    for name in list(os.environ):
        if name.startswith("MYTRADER_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)
    return monkeypatch


def test_every_setting_has_its_documented_default(clean_env: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert settings.model_dump() == {
        "data_root": None,
        "database_url": None,
        "synchronous_commit": False,
        "markets_file": None,
        "dagster_url": "http://127.0.0.1:3000",
        "api_token": None,
        "sensor_interval_seconds": 10,
        "max_files_per_run": None,
        "daily_import_cron": "0 2 * * *",
        "schedule_timezone": "UTC",
        "file_sensors": True,
        "sla_interval_seconds": 300,
        "sla_window_hours": 24.0,
        "global_sla_minutes": 120,
        "alert_webhook_url": None,
        "executor": "default",
        "celery_broker_url": "amqp://guest:guest@127.0.0.1:5672//",
        "celery_backend_url": "rpc://",
        "celery_visibility_timeout": 300,
        "dagster_home": None,
    }


def test_defaults_agree_with_the_areas_own_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert OrchestrationSettings.from_settings() == OrchestrationSettings()
    assert (DEFAULT_INTERVAL_SECONDS, DEFAULT_MAX_FILES_PER_RUN, DAILY_IMPORT_CRON) == (10, 1024, "0 2 * * *")
    assert MonitoringSettings.from_settings() == MonitoringSettings()
    assert (SLA_INTERVAL_SECONDS, SlaThresholds().global_sla_minutes) == (300, 120)
    assert ServiceSettings.from_settings() == ServiceSettings()


def test_variables_are_parsed_into_typed_settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "MYTRADER_DATA_ROOT": str(tmp_path),
        "MYTRADER_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x",
        "MYTRADER_SYNCHRONOUS_COMMIT": "on",
        "MYTRADER_MARKETS_FILE": str(tmp_path / "markets.yaml"),
        "MYTRADER_DAGSTER_URL": "http://deploy:3000",
        "MYTRADER_API_TOKEN": "s3cret",
        "MYTRADER_SENSOR_INTERVAL_SECONDS": "5",
        "MYTRADER_MAX_FILES_PER_RUN": "16",
        "MYTRADER_DAILY_IMPORT_CRON": "30 1 * * 1-5",
        "MYTRADER_SCHEDULE_TIMEZONE": "Europe/Istanbul",
        "MYTRADER_FILE_SENSORS": "off",
        "MYTRADER_SLA_INTERVAL_SECONDS": "60",
        "MYTRADER_SLA_WINDOW_HOURS": "1.5",
        "MYTRADER_GLOBAL_SLA_MINUTES": "90",
        "MYTRADER_ALERT_WEBHOOK_URL": "http://hooks/x",
        "DAGSTER_HOME": str(tmp_path / "home"),
    }.items():
        clean_env.setenv(name, value)
    settings = get_settings()
    assert (settings.data_root, settings.markets_file, settings.dagster_home) == (
        tmp_path,
        tmp_path / "markets.yaml",
        tmp_path / "home",
    )
    assert (settings.synchronous_commit, settings.file_sensors) == (True, False)
    assert (settings.sensor_interval_seconds, settings.max_files_per_run, settings.sla_window_hours) == (5, 16, 1.5)
    assert "s3cret" not in repr(settings)  # the token stays out of logs
    orchestration = OrchestrationSettings.from_settings()
    assert (orchestration.schedule_timezone, orchestration.file_sensors_running) == ("Europe/Istanbul", False)
    monitoring = MonitoringSettings.from_settings()
    assert (monitoring.interval_seconds, monitoring.thresholds.global_sla_minutes) == (60, 90)
    assert (monitoring.schedule_cron, monitoring.webhook_url) == ("30 1 * * 1-5", "http://hooks/x")
    service = ServiceSettings.from_settings(dagster_url="http://other:3000")
    assert (service.dagster_url, service.data_root, service.markets_file) == (
        "http://other:3000",
        tmp_path.resolve(),
        str(tmp_path / "markets.yaml"),
    )


def test_an_empty_variable_counts_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MYTRADER_DATA_ROOT", "")
    clean_env.setenv("MYTRADER_SENSOR_INTERVAL_SECONDS", "")
    clean_env.setenv("DAGSTER_HOME", "")
    settings = get_settings()
    assert (settings.data_root, settings.sensor_interval_seconds, settings.dagster_home) == (None, 10, None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MYTRADER_SENSOR_INTERVAL_SECONDS", "0", "MYTRADER_SENSOR_INTERVAL_SECONDS: .*greater than or equal to 1"),
        ("MYTRADER_MAX_FILES_PER_RUN", "many", "MYTRADER_MAX_FILES_PER_RUN: .*valid integer.*, got 'many'"),
        ("MYTRADER_SLA_WINDOW_HOURS", "-1", "MYTRADER_SLA_WINDOW_HOURS: .*greater than 0"),
        ("MYTRADER_FILE_SENSORS", "maybe", "MYTRADER_FILE_SENSORS: .*valid boolean"),
        ("MYTRADER_SYNCHRONOUS_COMMIT", "sometimes", "MYTRADER_SYNCHRONOUS_COMMIT: .*valid boolean"),
        ("MYTRADER_SCHEDULE_TIMEZONE", "Mars/Olympus", "MYTRADER_SCHEDULE_TIMEZONE: unknown time zone"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        get_settings()


def test_settings_are_read_once_until_the_cache_is_cleared(clean_env: pytest.MonkeyPatch) -> None:
    assert get_settings() is get_settings()
    clean_env.setenv("MYTRADER_GLOBAL_SLA_MINUTES", "45")
    assert get_settings().global_sla_minutes == 120  # read once: a later change is not seen ...
    get_settings.cache_clear()
    assert get_settings().global_sla_minutes == 45  # ... until the cache is cleared


def test_dagster_home_keeps_its_dagster_name() -> None:
    assert env_var("dagster_home") == "DAGSTER_HOME"
    assert env_var("data_root") == "MYTRADER_DATA_ROOT"
    assert Settings(dagster_home=Path("/x")).dagster_home == Path("/x")


def test_nothing_reads_the_environment_at_import_time() -> None:
    modules = ["mytrader_pipeline.definitions", "mytrader_pipeline.cli", "mytrader_pipeline.api.app"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MYTRADER_SENSOR_INTERVAL_SECONDS": "not-a-number"}
    code = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]"
    result = subprocess.run([sys.executable, "-c", code, *modules], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_documented_table_is_the_model() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    start = text.index("<!-- settings table: generated from mytrader_pipeline.settings.Settings -->\n")
    end = text.index("<!-- end of settings table -->")
    documented = text[text.index("\n", start) + 1 : end]
    assert documented == settings_table(), "docs/configuration.md drifted from Settings: paste settings_table()"


def test_a_market_s_files_are_one_run_on_one_machine_and_runs_of_128_on_celery() -> None:
    assert max_files_per_run(Settings()) == DEFAULT_MAX_FILES_PER_RUN == 1024
    assert max_files_per_run(Settings(executor="celery")) == CELERY_MAX_FILES_PER_RUN == 128
    assert max_files_per_run(Settings(executor="celery", max_files_per_run=16)) == 16
    assert OrchestrationSettings.from_settings(Settings()).max_files_per_run == 1024
