"""Where the import jobs' steps execute: in the run's own process(es), or on Celery workers (``MYTRADER_EXECUTOR``).

The workers' side (their Celery app, with kombu's Redis transport and the Redis client) is ``defs.celery_worker``,
imported by ``mytrader worker`` only.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import dagster_celery.defaults
from dagster_celery import celery_executor
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from mytrader_pipeline.markets import Market
from mytrader_pipeline.settings import Settings, get_settings

# Files in one sensor or schedule run under Celery: a run is one step on one worker, so a first load or a backfill is
# cut into runs that spread over the workers, each still carrying hundreds of thousands of rows (docs/scaling.md).
CELERY_MAX_FILES_PER_RUN = 128


def celery_queue_tags(market: Market) -> dict[str, str]:
    """Op tags routing ``market``'s import steps to its Celery queue (inert without ``MYTRADER_EXECUTOR=celery``)."""
    return {DAGSTER_CELERY_QUEUE_TAG: market.celery_queue}


def uses_celery(settings: Settings | None = None) -> bool:
    """Whether the deployment runs its import steps on Celery workers (``MYTRADER_EXECUTOR=celery``)."""
    return (settings or get_settings()).executor == "celery"


def celery_app_config(settings: Settings | None = None) -> dict[str, Any]:
    """dagster-celery's executor config: the broker, the result backend and the broker's transport options.

    They come from ``MYTRADER_CELERY_BROKER_URL``, ``MYTRADER_CELERY_BACKEND_URL`` and
    ``MYTRADER_CELERY_VISIBILITY_TIMEOUT``; workers (``mytrader worker``) and the runs that send them steps must
    agree on them. The transport options are dagster-celery's own (its ``config_source`` replaces them whole, so
    they are kept) plus two that the AMQP transport ignores: the ``visibility_timeout`` after which the Redis (or
    SQS) transport puts an unacknowledged step back in its queue (a live worker keeps its steps with
    ``VisibilityHeartbeat``), and Redis's restore sweep on each of kombu's restore ticks (every 10 s) rather than on
    every tenth, so a lost worker's step is redone within the timeout and 10 s.
    """
    chosen = settings or get_settings()
    transport_options = {
        **dagster_celery.defaults.broker_transport_options,
        "visibility_timeout": chosen.celery_visibility_timeout,
        "unacked_restore_throttle": 1,
    }
    return {
        "broker": chosen.celery_broker_url,
        "backend": chosen.celery_backend_url,
        "config_source": {"broker_transport_options": transport_options},
    }


def step_executor(default: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """The executor of an import job: ``default``, or dagster-celery's under ``MYTRADER_EXECUTOR=celery``.

    Read when the code location loads. The Celery executor keeps ``default``'s config schema, so every run config
    valid today (``import_all_markets``' ``multiprocess`` / ``in_process`` choice, sent by the service layer and the
    schedules) stays valid; on Celery it is ignored: the workers' concurrency (``mytrader worker --concurrency``)
    bounds the steps at once, and the run queue's per-market tag limits bound the runs.
    """
    settings = get_settings()
    if not uses_celery(settings):
        return default
    app_config = celery_app_config(settings)
    return celery_executor.configured(
        lambda _ignored: app_config,
        name="celery",
        config_schema=default.config_schema.as_field(),
    )
