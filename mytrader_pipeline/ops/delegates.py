"""Monitoring, dead-letter queue and health: the operations layer's calls into core.stats, core.dlq, core.health.

Each is implemented once, in core/ (by the failure-handling and monitoring areas); until a module has landed, its
operations raise ``NotAvailable`` (HTTP 501), never made-up data.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mytrader_pipeline.ops.errors import Conflict, DeploymentUnavailable, InvalidRequest, NotAvailable, NotFound

if TYPE_CHECKING:
    from mytrader_pipeline.ops.operations import Operations


def _module(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(f"mytrader_pipeline.core.{name}")
    except ModuleNotFoundError as exc:
        raise NotAvailable(f"{what} is not available in this deployment yet (core.{name} is missing)") from exc


def _instance(ops: Operations) -> Any:
    """The deployment's Dagster instance (its ``DAGSTER_HOME``): monitoring reads runs and daemon state from it."""
    import dagster as dg

    home = ops.settings.dagster_home
    if home is None:
        raise DeploymentUnavailable(
            "monitoring reads the deployment's Dagster instance: set DAGSTER_HOME to the deployment's home"
        )
    return dg.DagsterInstance.from_config(str(home))


def stats(ops: Operations, start: dt.date, end: dt.date) -> dict[str, Any]:
    """Monitoring statistics from ``defs.monitoring.stats_for`` (``core.stats``) over the deployment's runs."""
    _module("stats", "monitoring statistics")
    from mytrader_pipeline.core.db import ensure_schema
    from mytrader_pipeline.defs.monitoring import stats_for

    ensure_schema(ops.engine)
    with _instance(ops) as instance:
        return stats_for(instance, ops.registry, ops.engine, start, end).as_json()


class _DeploymentPartitions:
    """The two dynamic-partition calls ``replay_item`` makes on an instance, answered over the deployment's GraphQL."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def _market(self, partitions_def: str) -> Any:
        from mytrader_pipeline.defs.partitions import files_partitions

        return next(m for m in self.ops.registry if files_partitions(m).name == partitions_def)

    def get_dynamic_partitions(self, partitions_def: str) -> list[str]:
        return self.ops.gateway.partition_keys(self._market(partitions_def).asset_name)

    def add_dynamic_partitions(self, partitions_def: str, keys: list[str]) -> None:
        from mytrader_pipeline.defs.jobs import import_job_name

        selector = self.ops.gateway.repository_of_job(import_job_name(self._market(partitions_def)))
        for key in keys:
            self.ops.gateway.add_partition(selector, partitions_def, key)


def _dlq_call(call: Callable[[Any], Any], ops: Operations) -> Any:
    """Run ``call(store)`` translating the dead-letter queue's errors into the operations layer's."""
    dlq = _module("dlq", "the dead-letter queue")
    try:
        return call(dlq.DeadLetterStore(ops.ready_engine))
    except dlq.ItemNotFound as exc:
        raise NotFound(str(exc)) from exc
    except dlq.InvalidTransition as exc:
        raise Conflict(str(exc)) from exc
    except dlq.DeadLetterError as exc:
        raise InvalidRequest(str(exc)) from exc
    except sa.exc.OperationalError as exc:
        raise DeploymentUnavailable(f"the warehouse cannot be reached: {exc.orig or exc}") from exc


def dlq_list(ops: Operations, page: int, page_size: int, market: str | None, status: str | None) -> dict[str, Any]:
    """A page of dead-letter items (``core.dlq``), newest first; ``market`` is a registry code or ALL.

    Raises:
        InvalidRequest: for a market that is neither (named in the message, never passed to the database).
    """
    dlq = _module("dlq", "the dead-letter queue")
    known = [*ops.registry.codes, dlq.ALL_MARKETS]
    if market is not None and market.upper() not in known:
        raise InvalidRequest(f"market: unknown market {market!r}; one of {', '.join(known)}")
    return _dlq_call(
        lambda store: store.list(page=page, page_size=page_size, market=market, status=status), ops
    ).as_json()


def dlq_show(ops: Operations, item_id: int) -> dict[str, Any]:
    """One dead-letter item in full, with its stack trace (``core.dlq``)."""
    return _dlq_call(lambda store: store.get(item_id), ops).as_json(full=True)


def dlq_replay(ops: Operations, item_id: int) -> dict[str, Any]:
    """Replay an item through ``defs.failure.replay_item``, launching its runs on the deployment over GraphQL.

    The deployment's dead-letter resolution sensor resolves the item when the runs succeed.
    """
    _module("dlq", "the dead-letter queue")
    from mytrader_pipeline.defs.failure import replay_item

    def launch(job_name: str, run_config: dict[str, Any], tags: dict[str, str], _run_id: str) -> str:
        return ops.gateway.launch(job_name, run_config, tags)  # GraphQL cannot choose the id: return the one given

    partitions = _DeploymentPartitions(ops)
    return _dlq_call(
        lambda store: replay_item(partitions, ops.registry, store, item_id, launch),  # type: ignore[arg-type]
        ops,
    ).as_json(full=True)


def dlq_discard(ops: Operations, item_id: int, reason: str, by: str) -> dict[str, Any]:
    """Discard an item with who and why (``core.dlq``)."""
    return _dlq_call(lambda store: store.discard(item_id, reason, by), ops).as_json(full=True)


def health(ops: Operations) -> dict[str, Any]:
    """The health check from ``defs.monitoring_sources.collect_health`` (``core.health``) of the deployment."""
    _module("health", "the health check")
    from mytrader_pipeline.definitions import build_defs
    from mytrader_pipeline.defs.monitoring_sources import collect_health

    instance = _instance(ops) if ops.settings.dagster_home else None
    try:
        report = collect_health(instance, ops.engine, ops.settings.data_root, ops.registry, build_defs(ops.registry))
    finally:
        if instance is not None:
            instance.dispose()
    return report.as_json()
