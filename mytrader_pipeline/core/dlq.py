"""The dead-letter queue: durable failed work items (one per market and file), their replay, resolution and discard."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection, Engine, RowMapping

from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.db import dead_letter_queue as dlq
from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.discovery import file_path
from mytrader_pipeline.core.wire import Timestamp

OPEN, REPLAYED, RESOLVED, DISCARDED = "open", "replayed", "resolved", "discarded"
STATUSES = (OPEN, REPLAYED, RESOLVED, DISCARDED)
ACTIVE = (OPEN, REPLAYED)  # items still needing work: never purged, nor the runs and audit they point to
DLQ_ITEM_TAG = "mytrader/dlq_item"  # on a replay run: the item it replays
ALL_MARKETS = "ALL"  # the market of an all-markets run's item; its keys are file paths (BIST/X.csv), not file names


def keys_of_item(item_market: str, folder: str, keys: Sequence[str]) -> list[str]:
    """A market run's partition keys as an item of ``item_market`` names them: paths for an all-markets item."""
    return [file_path(folder, k) for k in keys] if item_market == ALL_MARKETS else list(keys)


class DeadLetterError(Exception):
    """An operation on the dead-letter queue that cannot be done."""


class ItemNotFound(DeadLetterError):
    """No item has this id."""


class InvalidTransition(DeadLetterError):
    """The item's status does not allow the operation (e.g. replaying a discarded item)."""


@dataclasses.dataclass(frozen=True)
class FailureRecord:
    """One failed run's work, as the run-failure sensor sees it."""

    run_id: str
    job_name: str
    market: str
    partition_keys: list[str]
    source_files: list[str]
    failed_files: dict[str, str]
    error_class: str
    message: str
    stack_trace: str | None
    attempts: int
    retryable: bool
    failed_at: dt.datetime
    run_ids: list[str]  # the run group: the original run and its automatic retries
    run_config: dict[str, Any]
    run_tags: dict[str, str]
    replay_of: int | None = None  # the item this run replayed
    # The partitions the run was asked to load (for a replay run: its part of the item). Those it names in
    # ``failed_files`` failed again; the rest of them loaded. Empty: all of ``partition_keys``.
    attempted_keys: list[str] = dataclasses.field(default_factory=list)


class ItemSummary(BaseModel):
    """A failed work item as pages list it: what failed, its state, what has been done about it (no details).

    The one declaration of these fields: ``DeadLetterItem`` adds the details, and the REST answers
    (``DeadLetterSummary``, ``DeadLetterItemResponse``) derive from these two.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    run_id: str
    job_name: str
    market: str
    partition_keys: list[str]
    source_files: list[str]
    error_class: str
    message: str
    attempts: int
    retryable: bool
    first_failure_at: Timestamp
    last_failure_at: Timestamp
    run_ids: list[str]
    status: str
    replay_run_ids: list[str]
    replayed_at: Timestamp | None
    resolved_at: Timestamp | None
    resolved_by_run_id: str | None
    discarded_at: Timestamp | None
    discarded_by: str | None
    discard_reason: str | None
    updated_at: Timestamp

    @property
    def all_run_ids(self) -> set[str]:
        """Every Dagster run this item points to."""
        return {self.run_id, *self.run_ids, *self.replay_run_ids}


class DeadLetterItem(ItemSummary):
    """A failed work item in full: its summary, the error of each failed file, the stack trace, run config and tags."""

    failed_files: dict[str, str]
    stack_trace: str | None
    run_config: dict[str, Any]
    run_tags: dict[str, str]

    @classmethod
    def from_row(cls, row: RowMapping) -> DeadLetterItem:
        """An item from a ``dead_letter_queue`` row."""
        return cls(**{name: row[name] for name in cls.model_fields})


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of items, newest first (``DeadLetterPage`` answers it, the items without their details)."""

    items: list[DeadLetterItem]
    total: int
    page: int
    page_size: int


class DeadLetterStore:
    """The ``dead_letter_queue`` table: record failures exactly once, list, replay, resolve, discard."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- reads -------------------------------------------------------------------------------------------------
    def get(self, item_id: int) -> DeadLetterItem:
        """The item with ``item_id``; ``ItemNotFound`` if there is none."""
        with self.engine.connect() as conn:
            return self._get(conn, item_id)

    @staticmethod
    def _get(conn: Connection, item_id: int, *, lock: bool = False) -> DeadLetterItem:
        query = sa.select(dlq).where(dlq.c.id == item_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise ItemNotFound(f"no dead-letter item {item_id}")
        return DeadLetterItem.from_row(row)

    def find_by_run(self, run_id: str) -> DeadLetterItem | None:
        """The item a failed run created or was added to, if any (the oldest of a run over several markets)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(dlq).where(dlq.c.run_id == run_id).order_by(dlq.c.id)).mappings().first()
            if row is None:  # a later failure of an item's files: one of its runs (JSON: looked up here, not in SQL)
                rows = conn.execute(sa.select(dlq).order_by(dlq.c.id.desc())).mappings()
                row = next((r for r in rows if run_id in r["run_ids"]), None)
        return DeadLetterItem.from_row(row) if row else None

    def list(self, *, page: int = 1, page_size: int = 50, market: str | None = None, status: str | None = None) -> Page:
        """Items newest first, ``page_size`` per page (pages start at 1), optionally of one market or status."""
        if page < 1 or not 1 <= page_size <= 1000:
            raise DeadLetterError("page starts at 1; page_size is 1..1000")
        if status is not None and status not in STATUSES:
            raise DeadLetterError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        where = []
        if market:
            where.append(dlq.c.market == market.upper())
        if status:
            where.append(dlq.c.status == status)
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(dlq).where(*where)).scalar_one()
            rows = conn.execute(
                sa.select(dlq).where(*where).order_by(dlq.c.id.desc()).limit(page_size).offset((page - 1) * page_size)
            ).mappings()
            items = [DeadLetterItem.from_row(r) for r in rows]
        return Page(items, int(total), page, page_size)

    def active_items(self) -> list[DeadLetterItem]:
        """Items still open or being replayed."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(dlq).where(dlq.c.status.in_(ACTIVE)).order_by(dlq.c.id)).mappings()
            return [DeadLetterItem.from_row(r) for r in rows]

    def protected_run_ids(self) -> set[str]:
        """Run ids that active items point to (retention keeps them and their audit)."""
        return {run_id for item in self.active_items() for run_id in item.all_run_ids}

    # -- writes ------------------------------------------------------------------------------------------------
    def record(self, failure: FailureRecord) -> tuple[DeadLetterItem, bool]:
        """Record a failed run once; returns the item and whether this call changed it.

        A run seen before (a sensor restart, a re-delivered event) changes nothing. A failed replay run reopens the
        item it replayed. Any other run lands on the market's active item holding one of its failed files, however
        it was launched (a re-execution from the UI, a sensor, the CLI): that item counts the attempt and takes the
        new error; only a failure of files no active item holds opens a new item. Recordings are serialised (an
        advisory lock on PostgreSQL), so two sensor ticks never open two items for one file.
        """
        with self.engine.begin() as conn:
            _serialise(conn)
            seen = self._item_with_run(conn, failure)
            if seen is not None:
                return seen, False
            if failure.replay_of is not None:
                try:
                    item = self._get(conn, failure.replay_of, lock=True)
                except ItemNotFound:
                    item = None
                if item is not None:
                    if item.status not in ACTIVE:
                        return item, False
                    return self._merge(conn, item, failure), True
            for item in self._active_holding(conn, failure.market, failure.partition_keys):
                if not _loaded_keys(conn, item) >= set(item.partition_keys):
                    return self._merge(conn, item, failure), True
                self._resolve(conn, item, _latest_success_run(conn, item))  # loaded meanwhile: this failure is news
            values = {f.name: getattr(failure, f.name) for f in dataclasses.fields(failure)}
            values.pop("replay_of")
            values.pop("attempted_keys")
            at = values.pop("failed_at")
            item_id = conn.execute(
                sa.insert(dlq)
                .values(
                    **values,
                    first_failure_at=at,
                    last_failure_at=at,
                    status=OPEN,
                    replay_run_ids=[],
                    updated_at=utc_now(),
                )
                .returning(dlq.c.id)
            ).scalar_one()
            return self._get(conn, int(item_id)), True

    def _item_with_run(self, conn: Connection, failure: FailureRecord) -> DeadLetterItem | None:
        """The item of ``failure``'s market that already recorded its run (as its first run or a later one), if any.

        A run over several markets' assets leaves one item per market: another market's item of the run is not it.
        """
        markets = {failure.market}
        if failure.replay_of is not None:  # a replay run of an all-markets item is recorded on that item
            markets.add(ALL_MARKETS)
        rows = conn.execute(sa.select(dlq).where(dlq.c.market.in_(markets))).mappings()
        found = (r for r in rows if r["run_id"] == failure.run_id or failure.run_id in r["run_ids"])
        row = next(found, None)
        return DeadLetterItem.from_row(row) if row is not None else None

    @staticmethod
    def _active_holding(conn: Connection, market: str, keys: Sequence[str]) -> list[DeadLetterItem]:
        """The market's active items holding any of ``keys``, oldest first (locked for the update)."""
        query = (
            sa.select(dlq).where(dlq.c.market == market, dlq.c.status.in_(ACTIVE)).order_by(dlq.c.id).with_for_update()
        )
        wanted = set(keys)
        items = [DeadLetterItem.from_row(r) for r in conn.execute(query).mappings()]
        return [i for i in items if wanted & set(i.partition_keys)]

    def _merge(self, conn: Connection, item: DeadLetterItem, failure: FailureRecord) -> DeadLetterItem:
        """Add a failed run to an active item: its attempts, run, error and failed files; the item is open again."""
        # The files the run tried and that did not fail are loaded: they leave the item. A run that names no failed
        # file (it crashed) tells nothing new about them: the item's list stands.
        attempted = set(failure.attempted_keys or failure.partition_keys)
        if failure.failed_files:
            keep = [k for k in item.partition_keys if k not in attempted or k in failure.failed_files]
            still_failing = {k: v for k, v in item.failed_files.items() if k not in attempted}
            failed_files = {**still_failing, **failure.failed_files}
        else:
            keep, failed_files = list(item.partition_keys), item.failed_files
        keys = [*keep, *[k for k in failure.partition_keys if k not in keep]]
        new_runs = [r for r in failure.run_ids if r not in item.run_ids]
        # A re-execution's record counts its whole run group, whose earlier runs the item has counted already.
        shares_runs = len(new_runs) < len(failure.run_ids)
        attempts = max(item.attempts + 1, failure.attempts) if shares_runs else item.attempts + failure.attempts
        conn.execute(
            sa.update(dlq)
            .where(dlq.c.id == item.id)
            .values(
                status=OPEN,
                failed_files=failed_files,
                partition_keys=keys,
                source_files=[*item.source_files, *[f for f in failure.source_files if f not in item.source_files]],
                error_class=failure.error_class,
                message=failure.message,
                stack_trace=failure.stack_trace,
                retryable=failure.retryable,
                attempts=attempts,
                last_failure_at=failure.failed_at,
                run_ids=[*item.run_ids, *new_runs],
                updated_at=utc_now(),
            )
        )
        return self._get(conn, item.id)

    def resolve_loaded(self, market: str | None = None) -> list[DeadLetterItem]:
        """Resolve every active item (of ``market``, or all) whose files have all loaded since they failed.

        However the load was launched (a UI re-execution, a sensor, a schedule, the CLI, a replay): the audit
        (``file_imports``) is the truth. A file counts as loaded when its latest finished load succeeded, in a run
        of the item or after the item's first failure. Returns the items resolved.
        """
        resolved: list[DeadLetterItem] = []
        with self.engine.begin() as conn:
            _serialise(conn)
            query = sa.select(dlq).where(dlq.c.status.in_(ACTIVE)).order_by(dlq.c.id).with_for_update()
            if market is not None:
                query = query.where(dlq.c.market.in_({market.upper(), ALL_MARKETS}))
            for row in conn.execute(query).mappings().all():
                item = DeadLetterItem.from_row(row)
                if item.partition_keys and _loaded_keys(conn, item) >= set(item.partition_keys):
                    resolved.append(self._resolve(conn, item, _latest_success_run(conn, item)))
        return resolved

    def _resolve(self, conn: Connection, item: DeadLetterItem, run_id: str | None) -> DeadLetterItem:
        now = utc_now()
        conn.execute(
            sa.update(dlq)
            .where(dlq.c.id == item.id)
            .values(status=RESOLVED, resolved_at=now, resolved_by_run_id=run_id, updated_at=now)
        )
        return self._get(conn, item.id)

    def mark_replayed(self, item_id: int, run_ids: Sequence[str]) -> DeadLetterItem:
        """Link the runs replaying an open (or already replayed) item."""
        with self.engine.begin() as conn:
            item = self._get(conn, item_id, lock=True)
            if item.status not in ACTIVE:
                raise InvalidTransition(f"item {item_id} is {item.status}: only open items can be replayed")
            now = utc_now()
            conn.execute(
                sa.update(dlq)
                .where(dlq.c.id == item_id)
                .values(status=REPLAYED, replay_run_ids=list(run_ids), replayed_at=now, updated_at=now)
            )
            return self._get(conn, item_id)

    def undo_replay(self, before: DeadLetterItem, planned: Sequence[str], started: Sequence[str]) -> DeadLetterItem:
        """Undo ``mark_replayed(before.id, planned)`` after a launch failed: only ``started`` of the runs exist.

        None started: the item is as it was ``before``. Some started: it is open again (the replay is incomplete, so
        its runs' success must not resolve it) and links the runs that did start. A change made meanwhile by
        someone else (a newer replay, a discard, a resolution) is left alone.
        """
        with self.engine.begin() as conn:
            item = self._get(conn, before.id, lock=True)
            if item.status != REPLAYED or item.replay_run_ids != list(planned):
                return item
            values: dict[str, Any] = (
                {"status": before.status, "replay_run_ids": before.replay_run_ids, "replayed_at": before.replayed_at}
                if not started
                else {"status": OPEN, "replay_run_ids": list(started)}
            )
            conn.execute(sa.update(dlq).where(dlq.c.id == item.id).values(**values, updated_at=utc_now()))
            return self._get(conn, item.id)

    def settle_replay_run(self, item_id: int, run_id: str, loaded_keys: Sequence[str]) -> DeadLetterItem | None:
        """A replay run of the item loaded ``loaded_keys``: they no longer need replaying (the others still may).

        Matters when a replay is several runs and not all succeed: the next replay redoes only what is left.
        """
        with self.engine.begin() as conn:
            item = self._get(conn, item_id, lock=True)
            if item.status not in ACTIVE or run_id not in item.replay_run_ids:
                return None
            loaded = set(loaded_keys)
            remaining = [k for k in item.partition_keys if k not in loaded]
            if not remaining or remaining == item.partition_keys:  # all loaded: resolution's business
                return item
            conn.execute(
                sa.update(dlq)
                .where(dlq.c.id == item_id)
                .values(
                    partition_keys=remaining,
                    failed_files={k: v for k, v in item.failed_files.items() if k not in loaded},
                    updated_at=utc_now(),
                )
            )
            return self._get(conn, item_id)

    def resolve_if_replayed(self, item_id: int, run_id: str, succeeded_run_ids: set[str]) -> DeadLetterItem | None:
        """Resolve the item when ``run_id`` is one of its replay runs and every one of them has succeeded."""
        with self.engine.begin() as conn:
            item = self._get(conn, item_id, lock=True)
            if item.status != REPLAYED or run_id not in item.replay_run_ids:
                return None
            if not set(item.replay_run_ids) <= succeeded_run_ids | {run_id}:
                return None
            now = utc_now()
            conn.execute(
                sa.update(dlq)
                .where(dlq.c.id == item_id)
                .values(status=RESOLVED, resolved_at=now, resolved_by_run_id=run_id, updated_at=now)
            )
            return self._get(conn, item_id)

    def discard(self, item_id: int, reason: str, by: str) -> DeadLetterItem:
        """Close an item nobody will fix, recording who and why."""
        if not reason.strip():
            raise DeadLetterError("a discard needs a reason")
        with self.engine.begin() as conn:
            item = self._get(conn, item_id, lock=True)
            if item.status not in ACTIVE:
                raise InvalidTransition(f"item {item_id} is already {item.status}")
            now = utc_now()
            conn.execute(
                sa.update(dlq)
                .where(dlq.c.id == item_id)
                .values(
                    status=DISCARDED,
                    discarded_at=now,
                    discarded_by=by.strip() or "unknown",
                    discard_reason=reason.strip(),
                    updated_at=now,
                )
            )
            return self._get(conn, item_id)


def replay_tags(item: DeadLetterItem) -> dict[str, str]:
    """The tags of a replay run: the original run's own tags (not Dagster's), and the item it replays."""
    kept = {k: v for k, v in item.run_tags.items() if not k.startswith(("dagster/", ".dagster/"))}
    return {**kept, DLQ_ITEM_TAG: str(item.id)}


def replay_run_config(item: DeadLetterItem) -> dict[str, Any]:
    """The original run's config (its import options), so the replay does the same work."""
    return dict(item.run_config)


def failed_keys(failed_files: Mapping[str, object], partition_keys: Sequence[str]) -> list[str]:
    """The partitions to replay: those named as failed, else (a crash names none) all of the run's."""
    return [k for k in partition_keys if k in failed_files] or list(partition_keys)


_RECORD_LOCK_ID = 7_318_202  # pg_advisory_xact_lock key serialising the recording and resolution of items


def _serialise(conn: Connection) -> None:
    """Hold the queue's lock until the transaction ends (PostgreSQL; SQLite serialises its writers itself)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _RECORD_LOCK_ID})


def _latest_loads(conn: Connection, item: DeadLetterItem) -> dict[str, RowMapping]:
    """Each file of the item's latest finished load (succeeded or failed) in the audit, by the item's key."""
    if item.market == ALL_MARKETS:  # keys are paths (BIST/X.csv): the audit's source_file
        key_column, where = file_imports.c.source_file, [file_imports.c.source_file.in_(item.partition_keys)]
    else:
        key_column = file_imports.c.partition_key
        where = [file_imports.c.market == item.market, file_imports.c.partition_key.in_(item.partition_keys)]
    rows = conn.execute(
        sa.select(key_column.label("key"), file_imports.c.status, file_imports.c.run_id, file_imports.c.finished_at)
        .where(*where, file_imports.c.status.in_(("succeeded", "failed")))
        .order_by(file_imports.c.finished_at, file_imports.c.id)
    ).mappings()
    return {row["key"]: row for row in rows}  # the last one of each key wins


def _loaded_keys(conn: Connection, item: DeadLetterItem) -> set[str]:
    """The item's files whose latest load succeeded, in one of the item's runs or after its first failure."""
    runs, since = item.all_run_ids, _aware(item.first_failure_at)
    return {
        key
        for key, row in _latest_loads(conn, item).items()
        if row["status"] == "succeeded" and (row["run_id"] in runs or _aware(row["finished_at"]) > since)
    }


def _latest_success_run(conn: Connection, item: DeadLetterItem) -> str | None:
    """The run of the latest successful load among the item's files: the one that completed the fix."""
    loads = [r for r in _latest_loads(conn, item).values() if r["status"] == "succeeded"]
    return max(loads, key=lambda r: _aware(r["finished_at"]))["run_id"] if loads else None


def _aware(at: dt.datetime) -> dt.datetime:
    """A timestamp as UTC-aware (SQLite hands them back naive)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
