"""Monitoring, dead-letter queue and health: the operations layer's calls into core.stats, core.dlq, core.health.

Each is implemented once, in core/ (by the failure-handling and monitoring areas); until a module has landed, its
operations raise ``NotAvailable`` (HTTP 501), never made-up data.
"""

from __future__ import annotations

import datetime as dt
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mytrader_pipeline.ops.errors import NotAvailable

if TYPE_CHECKING:
    from mytrader_pipeline.ops.operations import Operations


def _module(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(f"mytrader_pipeline.core.{name}")
    except ModuleNotFoundError as exc:
        raise NotAvailable(f"{what} is not available in this deployment yet (core.{name} is missing)") from exc


def stats(ops: Operations, start: dt.date, end: dt.date) -> dict[str, Any]:
    """Monitoring statistics from ``core.stats``."""
    _module("stats", "monitoring statistics")
    raise NotAvailable("monitoring statistics: core.stats has no supported entry point yet")


def dlq_list(ops: Operations, page: int, page_size: int, market: str | None, status: str | None) -> dict[str, Any]:
    """A page of dead-letter items from ``core.dlq``."""
    _module("dlq", "the dead-letter queue")
    raise NotAvailable("the dead-letter queue: core.dlq has no supported entry point yet")


def dlq_show(ops: Operations, item_id: int) -> dict[str, Any]:
    """One dead-letter item from ``core.dlq``."""
    _module("dlq", "the dead-letter queue")
    raise NotAvailable("the dead-letter queue: core.dlq has no supported entry point yet")


def dlq_replay(ops: Operations, item_id: int) -> dict[str, Any]:
    """Replay through ``core.dlq``."""
    _module("dlq", "the dead-letter queue")
    raise NotAvailable("the dead-letter queue: core.dlq has no supported entry point yet")


def dlq_discard(ops: Operations, item_id: int, reason: str, by: str) -> dict[str, Any]:
    """Discard through ``core.dlq``."""
    _module("dlq", "the dead-letter queue")
    raise NotAvailable("the dead-letter queue: core.dlq has no supported entry point yet")


def health(ops: Operations) -> dict[str, Any]:
    """The health check from ``core.health``."""
    _module("health", "the health check")
    raise NotAvailable("the health check: core.health has no supported entry point yet")
