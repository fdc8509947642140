"""Run states as Dagster names them (``DagsterRunStatus`` values), for code that must not import Dagster."""

from __future__ import annotations

FINISHED_STATES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
RUNNING_STATES = frozenset({"STARTING", "STARTED", "CANCELING"})
WAITING_STATES = frozenset({"QUEUED", "NOT_STARTED"})
