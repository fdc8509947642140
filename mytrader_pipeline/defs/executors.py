"""Where the import jobs' steps execute: in the run's own process(es), or on Celery workers (``MYTRADER_EXECUTOR``)."""

from __future__ import annotations

from typing import Any

import celery
import celery.signals
import celery.utils.log
import dagster as dg
import dagster_celery.defaults
import kombu
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import unpack_value
from dagster_celery import celery_executor
from dagster_celery.config import TASK_EXECUTE_PLAN_NAME
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG
from dagster_celery.tasks import create_task

from mytrader_pipeline.defs.visibility_heartbeat import VisibilityHeartbeat
from mytrader_pipeline.markets import Market
from mytrader_pipeline.settings import Settings, get_settings

_TASK_LOG = celery.utils.log.get_task_logger("mytrader.worker")


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


class StepOfALiveRun(celery.Task):
    """dagster-celery's step task, run only while its run is still going: a step whose run has ended is dropped.

    A step comes back to a worker after its run has ended when the broker lost the worker's connection before the
    step's acknowledgement (RabbitMQ restarted): the step had run, the run had already failed (its executor lost the
    broker too) or finished, and running the step again would append a second attempt to a closed run (files
    cancelled again, events after the run's end). The dropped step is logged and acknowledged.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        packed = kwargs.get("execute_step_args_packed") or (args[0] if args else None)
        step_args = unpack_value(packed, as_type=ExecuteStepArgs)
        with dg.DagsterInstance.from_ref(step_args.instance_ref) as instance:
            run = instance.get_run_by_id(step_args.run_id)
        if run is not None and run.is_finished:
            _TASK_LOG.warning(
                "task %s: %s: not run, its run has ended (%s)",
                self.request.id,
                _task_step({"execute_step_args_packed": packed}),
                run.status.value,
            )
            return []
        return super().__call__(*args, **kwargs)


def worker_app(queues: tuple[str, ...], settings: Settings | None = None) -> celery.Celery:
    """The Celery app of ``mytrader worker``: dagster-celery's step task, consuming ``queues``.

    The step task is acknowledged when it ends, not when it starts (``acks_late``, ``reject_on_worker_lost``): a
    worker killed in the middle of a step leaves it on the broker, and another worker (or this one restarted) runs
    it again; each file's load is one transaction, so the redone step loads what the killed one left undone. Each
    queue is bound to the routing key dagster-celery sends a market's steps with (``<queue>.execute_plan``), so a
    market's ``celery_queue`` reaches the workers that listen on it. Each task it runs is logged (run, step, end);
    a step whose run has already ended is not run again (``StepOfALiveRun``). On a Redis broker, where a step
    comes back only after the visibility timeout, ``VisibilityHeartbeat`` keeps the steps of a live worker from
    coming back while they run.
    """
    app = make_app(CeleryExecutor.for_cli(**celery_app_config(settings)).app_args())
    app.conf.task_queues = [
        kombu.Queue(
            queue,
            kombu.Exchange(queue, type="direct"),
            routing_key=f"{queue}.{TASK_EXECUTE_PLAN_NAME}",
            queue_arguments={"x-max-priority": 10},  # dagster-celery's step priorities
        )
        for queue in queues
    ]
    create_task(app, acks_late=True, reject_on_worker_lost=True, base=StepOfALiveRun)
    app.steps["worker"].add(VisibilityHeartbeat)
    return app


def _task_step(kwargs: dict[str, Any]) -> str:
    """The run and step(s) of a dagster-celery step task, from its arguments."""
    packed = kwargs.get("execute_step_args_packed") or {}  # ExecuteStepArgs as stored: run_id is pipeline_run_id
    return f"run {packed.get('pipeline_run_id')}, step(s) {', '.join(packed.get('step_keys_to_execute') or [])}"


@celery.signals.task_prerun.connect
def _log_task_start(task_id: str, task: celery.Task, kwargs: dict[str, Any], **_: Any) -> None:
    _TASK_LOG.info("task %s: %s: started", task_id, _task_step(kwargs))


@celery.signals.task_postrun.connect
def _log_task_end(task_id: str, task: celery.Task, kwargs: dict[str, Any], state: str | None = None, **_: Any) -> None:
    _TASK_LOG.info("task %s: %s: ended %s", task_id, _task_step(kwargs), state)
