"""``mytrader worker``'s Celery app: dagster-celery's step task, run while its run lives, logged, kept on Redis."""

from __future__ import annotations

from typing import Any

import celery
import celery.signals
import celery.utils.log
import dagster as dg
import kombu
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import unpack_value
from dagster_celery.config import TASK_EXECUTE_PLAN_NAME
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from mytrader_pipeline.defs.executors import celery_app_config
from mytrader_pipeline.defs.visibility_heartbeat import VisibilityHeartbeat
from mytrader_pipeline.settings import Settings

_TASK_LOG = celery.utils.log.get_task_logger("mytrader.worker")


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
