"""User schedules of the all-markets import: stored in the warehouse, due ticks computed from cron + time zone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import zoneinfo
from typing import Any

import sqlalchemy as sa

# Dagster's own cron arithmetic (time zones, DST), the same the code-defined schedules use; not a public API.
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.clock import as_utc
from mytrader_pipeline.core.db import ensure_schema, user_schedules
from mytrader_pipeline.core.request_errors import InvalidRequest, NotFound
from mytrader_pipeline.core.requests import AllMarketsImportRequest
from mytrader_pipeline.core.responses import ScheduleResponse


@dataclasses.dataclass(frozen=True)
class UserSchedule:
    """A recurring all-markets import: its id (the old ``recurringJobId``), cron, time zone and request."""

    id: str
    cron_expression: str
    time_zone: str
    import_request: AllMarketsImportRequest
    created_at: dt.datetime

    def next_tick(self, after: dt.datetime) -> dt.datetime:
        """The first cron tick strictly after ``after`` (time-zone aware)."""
        for tick in cron_string_iterator(after.timestamp(), self.cron_expression, self.time_zone):
            if tick > after:
                return tick
        raise AssertionError("a valid cron string always has a next tick")

    def latest_due_tick(self, since: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        """The latest tick in ``(since, now]`` (ticks missed in between are not caught up), or None."""
        latest: dt.datetime | None = None
        for tick in cron_string_iterator(since.timestamp(), self.cron_expression, self.time_zone):
            if tick > now:
                break
            if tick > since:
                latest = tick
        return latest

    def as_api(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The old API's recurring-job JSON (camelCase names)."""
        return self.response(now).as_json()

    def response(self, now: dt.datetime | None = None) -> ScheduleResponse:
        """The old API's recurring job, as the REST API answers it."""
        return ScheduleResponse(
            recurring_job_id=self.id,
            cron_expression=self.cron_expression,
            time_zone=self.time_zone,
            import_request=self.import_request.as_json(),
            created_at=self.created_at,
            next_execution=self.next_tick(now or dt.datetime.now(dt.UTC)),
        )


def validate_cron(cron_expression: str) -> None:
    """``InvalidRequest`` when ``cron_expression`` is not a valid 5-field cron expression."""
    if not isinstance(cron_expression, str) or not is_valid_cron_string(cron_expression.strip()):
        raise InvalidRequest(f"cronExpression: {cron_expression!r} is not a valid 5-field cron expression")


def validate_time_zone(time_zone: str) -> None:
    """``InvalidRequest`` when ``time_zone`` is not an IANA time zone name."""
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise InvalidRequest(f"timeZone: {time_zone!r} is not an IANA time zone (e.g. UTC, Europe/Istanbul)") from exc


def validate_schedule(cron_expression: str, time_zone: str) -> None:
    """``InvalidRequest`` naming the field when the cron expression or the time zone is not valid."""
    validate_cron(cron_expression)
    validate_time_zone(time_zone)


class ScheduleStore:
    """The ``user_schedules`` table of the warehouse."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_schema(engine)

    def add(self, cron_expression: str, time_zone: str, request: AllMarketsImportRequest) -> UserSchedule:
        """Store a new schedule; returns it with its generated id."""
        cron_expression = cron_expression.strip()
        validate_schedule(cron_expression, time_zone)
        schedule = UserSchedule(
            id=f"all-markets-{uuid.uuid4().hex[:12]}",
            cron_expression=cron_expression,
            time_zone=time_zone,
            import_request=request,
            created_at=dt.datetime.now(dt.UTC),
        )
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(user_schedules).values(
                    id=schedule.id,
                    cron_expression=schedule.cron_expression,
                    time_zone=schedule.time_zone,
                    import_request=request.as_json(),
                    created_at=schedule.created_at,
                )
            )
        return schedule

    def list(self) -> list[UserSchedule]:
        """Every stored schedule, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(user_schedules).order_by(user_schedules.c.created_at)).all()
        return [_from_row(row) for row in rows]

    def get(self, schedule_id: str) -> UserSchedule:
        """The schedule ``schedule_id``; ``NotFound`` otherwise."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(user_schedules).where(user_schedules.c.id == schedule_id)).first()
        if row is None:
            raise NotFound(f"no schedule with id {schedule_id!r}")
        return _from_row(row)

    def remove(self, schedule_id: str) -> None:
        """Delete ``schedule_id``; ``NotFound`` if there is none."""
        with self.engine.begin() as conn:
            deleted = conn.execute(sa.delete(user_schedules).where(user_schedules.c.id == schedule_id)).rowcount
        if not deleted:
            raise NotFound(f"no schedule with id {schedule_id!r}")


def _from_row(row: sa.Row[Any]) -> UserSchedule:
    created = as_utc(row.created_at)
    return UserSchedule(
        id=row.id,
        cron_expression=row.cron_expression,
        time_zone=row.time_zone,
        import_request=AllMarketsImportRequest.from_json(row.import_request),
        created_at=created,
    )
