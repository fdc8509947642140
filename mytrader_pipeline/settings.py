"""The deployment's settings: every ``MYTRADER_*`` variable and ``DAGSTER_HOME``, read once; where state lives."""

from __future__ import annotations

import functools
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import pydantic
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR_NAME = ".mytrader"
ENV_PREFIX = "MYTRADER_"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
DEFAULT_CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND_URL = "rpc://"
DEFAULT_CELERY_VISIBILITY_TIMEOUT = 300


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use; the message names the variable."""


def _doc(meaning: str, default: str) -> Any:
    """Field metadata read by ``settings_table``: the variable's meaning and its default as the docs state it."""
    return {"meaning": meaning, "default": default}


class Settings(BaseSettings):
    """Every setting the code reads from the environment (empty counts as unset), with its default.

    Dagster resources still take ``MYTRADER_DATABASE_URL`` and ``MYTRADER_DATA_ROOT`` through ``dg.EnvVar`` (read
    when a run starts); everything else reads ``get_settings()``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=True
    )

    data_root: Path | None = Field(
        None,
        json_schema_extra=_doc(
            "folder holding `BIST/`, `Crypto/`, `NASDAQ/`, `NYSE/`; all file access is confined to it",
            "CLI: `./.mytrader/data` (`mytrader run` generates the sample tree there); code location (`dagster dev`): "
            "the same when unset; set it in a deployment; API: required",
        ),
    )
    database_url: str | None = Field(
        None,
        json_schema_extra=_doc(
            "SQLAlchemy URL of the warehouse; `postgresql://` uses psycopg 3 and COPY",
            "CLI: `sqlite:///./.mytrader/warehouse.db`; code location (`dagster dev`): the same when unset; "
            "set it in a deployment; API: required",
        ),
    )
    synchronous_commit: bool = Field(
        False,
        json_schema_extra=_doc(
            "`true`: each file's commit waits for the disk (PostgreSQL); see [ingest.md](ingest.md) (Loading)",
            "`false`",
        ),
    )
    markets_file: Path | None = Field(
        None,
        json_schema_extra=_doc(
            "market registry override file, merged over the shipped `markets.yaml` by the code location, the "
            "`mytrader` commands and the REST API",
            "none",
        ),
    )
    dagster_url: str = Field(
        DEFAULT_DAGSTER_URL,
        json_schema_extra=_doc(
            "the deployment's web server, for the CLI's deployment commands and the REST API",
            f"`{DEFAULT_DAGSTER_URL}`",
        ),
    )
    api_token: str | None = Field(
        None,
        repr=False,
        json_schema_extra=_doc("bearer token of the REST API's state-changing calls", "none: they are refused (503)"),
    )
    sensor_interval_seconds: Annotated[int, Field(ge=1)] = Field(
        10, json_schema_extra=_doc("file sensors' interval", "10")
    )
    max_files_per_run: Annotated[int, Field(ge=1)] | None = Field(
        None,
        json_schema_extra=_doc(
            "most partitions in one sensor or per-market schedule run",
            "1024 (a market's files in one run); 128 with `MYTRADER_EXECUTOR=celery`",
        ),
    )
    daily_import_cron: str = Field(
        "0 2 * * *",
        json_schema_extra=_doc(
            "the daily import's cron (fixed daily time); also starts each day's SLA deadlines", "`0 2 * * *`"
        ),
    )
    schedule_timezone: str = Field(
        "UTC", json_schema_extra=_doc("time zone of the import schedules and deadlines", "`UTC`")
    )
    file_sensors: bool = Field(
        True,
        json_schema_extra=_doc(
            "`off` (or `0`, `false`, `no`) starts a new deployment with the file sensors stopped", "`on`"
        ),
    )
    sla_interval_seconds: Annotated[int, Field(ge=1)] = Field(
        300, json_schema_extra=_doc("SLA monitor interval", "300")
    )
    sla_window_hours: Annotated[float, Field(gt=0)] = Field(
        24.0,
        json_schema_extra=_doc("window of the error-rate, processing-rate and compliance rules", "24"),
    )
    global_sla_minutes: Annotated[int, Field(ge=1)] = Field(
        120, json_schema_extra=_doc("SLA of the all-markets import", "120")
    )
    alert_webhook_url: str | None = Field(
        None,
        json_schema_extra=_doc("where alerts are posted (Slack-compatible JSON)", "none: not posted"),
    )
    executor: Literal["default", "celery"] = Field(
        "default",
        json_schema_extra=_doc(
            "`celery`: the import jobs run their steps on Celery workers (`mytrader worker`); read when the code "
            "location loads, see [scaling.md](scaling.md)",
            "`default`: in the run's process (all markets: one process per market)",
        ),
    )
    celery_broker_url: str = Field(
        DEFAULT_CELERY_BROKER_URL,
        repr=False,
        json_schema_extra=_doc(
            "the Celery broker of `MYTRADER_EXECUTOR=celery` and `mytrader worker`", f"`{DEFAULT_CELERY_BROKER_URL}`"
        ),
    )
    celery_backend_url: str = Field(
        DEFAULT_CELERY_BACKEND_URL,
        repr=False,
        json_schema_extra=_doc(
            "the Celery result backend of `MYTRADER_EXECUTOR=celery` and `mytrader worker`",
            f"`{DEFAULT_CELERY_BACKEND_URL}`",
        ),
    )
    celery_visibility_timeout: Annotated[int, Field(ge=1)] = Field(
        DEFAULT_CELERY_VISIBILITY_TIMEOUT,
        json_schema_extra=_doc(
            "seconds a Redis broker waits before it hands a step whose worker stopped confirming it (killed, lost) to "
            "another worker; `mytrader worker` confirms its steps every quarter of it however long they run, so a "
            "lost worker's step is redone after it (and up to 10 s). Short enough that a lost step waits minutes, "
            "not kombu's hour; long enough that a Redis outage of a few minutes does not hand out running steps. "
            "RabbitMQ ignores it (a lost step comes back at once); on SQS nothing confirms the steps: set it above "
            "the longest step. The deployment and the workers must agree on it",
            f"{DEFAULT_CELERY_VISIBILITY_TIMEOUT}",
        ),
    )
    dagster_home: Path | None = Field(
        None,
        validation_alias="DAGSTER_HOME",
        json_schema_extra=_doc(
            "the Dagster instance folder (holds `dagster.yaml`)",
            "`./.mytrader/dagster_home` for `run`, `stats`, `health`; the API's stats and health need it",
        ),
    )

    @pydantic.field_validator("schedule_timezone")
    @classmethod
    def _known_time_zone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        return name


def env_var(field: str) -> str:
    """The environment variable that sets ``field`` (e.g. ``MYTRADER_DATA_ROOT``, ``DAGSTER_HOME``)."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


@functools.cache
def get_settings() -> Settings:
    """The settings, read from the environment on the first call and cached for the life of the process.

    Tests that change the environment call ``get_settings.cache_clear()`` (the ``fresh_settings`` fixture of
    ``mytrader_pipeline_tests/conftest.py`` does it around every test). A bad value raises ``SettingsError`` naming
    the variable, e.g. ``MYTRADER_SENSOR_INTERVAL_SECONDS: Input should be greater than or equal to 1, got '0'``.
    """
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        names = {field: env_var(field) for field in Settings.model_fields}
        problems = []
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else "?"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{names.get(where, where)}: {message}, got {error['input']!r}")
        raise SettingsError("; ".join(problems)) from exc


def settings_table() -> str:
    """The Markdown table of every setting (variable, meaning, default) that docs/configuration.md shows."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        doc = cast(dict[str, str], field.json_schema_extra)
        rows.append(f"| `{env_var(name)}` | {doc['meaning']} | {doc['default']} |")
    return "\n".join(rows) + "\n"


def state_dir(base: Path | None = None) -> Path:
    """The project's local state folder (``./.mytrader`` under the working directory unless ``base`` is given)."""
    return (base or Path.cwd()) / STATE_DIR_NAME


def default_database_url(base: Path | None = None) -> str:
    """The embedded default warehouse: a SQLite file in the local state folder."""
    return f"sqlite:///{(state_dir(base) / 'warehouse.db').resolve()}"


def default_data_root(base: Path | None = None) -> Path:
    """Where the quickstart generates its sample tree."""
    return state_dir(base) / "data"


def default_dagster_home(base: Path | None = None) -> Path:
    """The Dagster home used when ``DAGSTER_HOME`` is not set."""
    return state_dir(base) / "dagster_home"
