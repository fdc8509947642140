"""SLA targets and breaches: deadlines from the registry and the daily schedule, and what counts as a breach.

Everything here is pure: the Dagster layer extracts plain records (``RunInfo``, ``MarketProgress``) from the
instance and the audit, and ``evaluate`` says which breaches hold at ``now``. ``core.alerts`` turns them into alerts
that fire once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence

from mytrader_pipeline.core.runs import FINISHED_STATES
from mytrader_pipeline.markets import Market, MarketRegistry

ALL_MARKETS = "ALL"  # the market of the all-markets job's runs (and of alerts not about one market)


class AlertType(enum.StrEnum):
    """What was breached."""

    RUN_DURATION = "run_duration"  # one market's run longer than the market's SLA (while running, or at its end)
    MARKET_DEADLINE = "market_deadline"  # a market not loaded by schedule time + its SLA
    GLOBAL_DURATION = "global_duration"  # the all-markets import longer than the global SLA
    ERROR_RATE = "error_rate"  # failed runs or rejected rows over the window
    PROCESSING_RATE = "processing_rate"  # records per second under the floor
    SLA_COMPLIANCE = "sla_compliance"  # share of runs within their SLA under the floor


class Severity(enum.StrEnum):
    """How urgent an alert is (the old system's priorities)."""

    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclasses.dataclass(frozen=True)
class SlaThresholds:
    """The limits the monitor judges against (the old system's alerting thresholds by default)."""

    global_sla_minutes: int = 120
    max_error_rate: float = 0.10
    min_records_per_second: float = 500.0
    min_compliance: float = 0.80
    window: dt.timedelta = dt.timedelta(hours=24)
    min_records_for_rate: int = 10_000  # a market's rate is judged only over at least this many records
    min_runs_for_rates: int = 3  # run error rate and compliance are judged only over at least this many runs


@dataclasses.dataclass(frozen=True)
class DailySchedule:
    """A daily cron (``M H * * DOW``) in a time zone: when the nightly import starts, so when deadlines fall."""

    minute: int
    hour: int
    weekdays: frozenset[int] | None = None  # cron day-of-week numbers (0 = Sunday); None: every day
    timezone: str = "UTC"

    @classmethod
    def from_cron(cls, cron: str, timezone: str = "UTC") -> DailySchedule:
        """Parse ``cron``; only fixed-time daily crons (optionally on some weekdays) have deadlines.

        Raises:
            ValueError: for a cron that is not ``M H * * DOW`` with a single minute and hour.
        """
        fields = cron.split()
        if len(fields) != 5 or not fields[0].isdigit() or not fields[1].isdigit() or fields[2:4] != ["*", "*"]:
            raise ValueError(f"SLA deadlines need a daily cron 'M H * * DOW', got {cron!r}")
        minute, hour = int(fields[0]), int(fields[1])
        if not (0 <= minute < 60 and 0 <= hour < 24):
            raise ValueError(f"cron {cron!r}: minute or hour out of range")
        zoneinfo.ZoneInfo(timezone)
        return cls(minute, hour, _weekdays(fields[4]), timezone)

    def last_tick(self, now: dt.datetime) -> dt.datetime:
        """The latest scheduled time at or before ``now`` (UTC)."""
        local = now.astimezone(zoneinfo.ZoneInfo(self.timezone))
        for days_back in range(8):
            day = local.date() - dt.timedelta(days=days_back)
            candidate = dt.datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=local.tzinfo)
            if candidate <= local and (self.weekdays is None or (day.isoweekday() % 7) in self.weekdays):
                return candidate.astimezone(dt.UTC)
        raise ValueError("schedule never fires")  # unreachable: a weekday set is never empty

    def deadline_cron(self, minutes: int) -> str:
        """The cron of ``minutes`` after each tick (e.g. ``45 2 * * *`` for 02:00 + 45 min)."""
        total = self.hour * 60 + self.minute + minutes
        days, total = divmod(total, 24 * 60)
        dow = "*" if self.weekdays is None else ",".join(str((d + days) % 7) for d in sorted(self.weekdays))
        return f"{total % 60} {total // 60} * * {dow}"


def _weekdays(field: str) -> frozenset[int] | None:
    if field == "*":
        return None
    days: set[int] = set()
    for part in field.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"day-of-week {field!r}: use numbers, lists and ranges (0-6)")
        days.update(d % 7 for d in range(int(low), int(high or low) + 1))
    return frozenset(days)


@dataclasses.dataclass(frozen=True)
class MarketAudit:
    """What one run did for one market, from the ``file_imports`` audit."""

    files: int = 0
    files_failed: int = 0
    rows_read: int = 0
    rows_rejected: int = 0
    first_started: dt.datetime | None = None
    last_finished: dt.datetime | None = None

    @property
    def processing_seconds(self) -> float:
        """Wall-clock seconds from the first file's start to the last file's end."""
        if self.first_started is None or self.last_finished is None:
            return 0.0
        return max((self.last_finished - self.first_started).total_seconds(), 0.0)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One import run, as plain data (extracted from a Dagster run record and the audit)."""

    run_id: str
    job_name: str
    status: str  # a DagsterRunStatus name: QUEUED, STARTED, SUCCESS, FAILURE, CANCELED ...
    # The markets the run imports; of several (a run over several markets' assets), first the one whose rules it runs
    # under (the run coordinator's ``market`` tag): its SLA target judges the run and its alerts name it.
    markets: tuple[str, ...]
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    all_markets: bool = False  # a run of the all-markets job (judged against the global SLA)
    sla_minutes: int | None = None  # the run's own SLA target (run config), else the market's
    succeeded_at: Mapping[str, dt.datetime] = dataclasses.field(default_factory=dict)  # market -> when it succeeded
    will_retry: bool = False  # failed, and Dagster will re-execute it
    retry_number: int = 0
    error_class: str | None = None  # why the run failed, when it did
    audit: Mapping[str, MarketAudit] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the run has ended (succeeded, failed or was cancelled)."""
        return self.status in FINISHED_STATES

    @property
    def market(self) -> str:
        """The run's market code (of several, the one whose rules it runs under), or ``ALL`` for the all-markets job."""
        return ALL_MARKETS if self.all_markets or not self.markets else self.markets[0]

    def duration_seconds(self, now: dt.datetime) -> float | None:
        """Seconds from start to end (to ``now`` while running); None before it starts."""
        if self.started_at is None:
            return None
        end = self.ended_at if self.finished and self.ended_at else now
        return max((end - self.started_at).total_seconds(), 0.0)

    @property
    def rows_read(self) -> int:
        """Records processed by the run, all markets."""
        return sum(a.rows_read for a in self.audit.values())


def sla_minutes_for(run: RunInfo, registry: MarketRegistry, thresholds: SlaThresholds) -> int:
    """The SLA target of ``run``: its own, else the global one (all markets), else its market's."""
    if run.sla_minutes:
        return run.sla_minutes
    if run.market not in registry.codes:  # the all-markets job (or a market no longer in the registry)
        return thresholds.global_sla_minutes
    return registry.get(run.market).sla_minutes


def is_sla_breached(run: RunInfo, now: dt.datetime, registry: MarketRegistry, thresholds: SlaThresholds) -> bool:
    """Whether ``run`` has taken (or, still running, already takes) longer than its SLA target."""
    seconds = run.duration_seconds(now)
    return seconds is not None and seconds > sla_minutes_for(run, registry, thresholds) * 60


def compliance_rate(
    runs: Iterable[RunInfo], now: dt.datetime, registry: MarketRegistry, thresholds: SlaThresholds
) -> float | None:
    """Share of judged runs within their SLA: finished runs, and running ones already over it. None: none judged."""
    judged = breached = 0
    for run in runs:
        over = is_sla_breached(run, now, registry, thresholds)
        if (run.finished and run.started_at is not None) or over:
            judged += 1
            breached += over
    return (judged - breached) / judged if judged else None


@dataclasses.dataclass(frozen=True)
class MarketProgress:
    """How far a market got since the last schedule tick: what is known, and what was loaded when."""

    market: str
    known_partitions: tuple[str, ...]  # the market's files (partitions)
    loaded_at: Mapping[str, dt.datetime]  # partition -> its latest load (materialization) since the tick
    full_scans: tuple[dt.datetime, ...] = ()  # ends of all-markets steps since the tick that processed every file

    def missing(self) -> list[str]:
        """Partitions not loaded since the tick (none once a full scan succeeded)."""
        if self.full_scans:
            return []
        return [key for key in self.known_partitions if key not in self.loaded_at]

    def complete_at(self) -> dt.datetime | None:
        """When every known partition had been loaded since the tick; None while some is missing, or none ran."""
        candidates = [min(self.full_scans)] if self.full_scans else []
        if self.known_partitions and all(key in self.loaded_at for key in self.known_partitions):
            candidates.append(max(self.loaded_at[key] for key in self.known_partitions))
        return min(candidates) if candidates else None


@dataclasses.dataclass(frozen=True)
class Breach:
    """One SLA breach holding at evaluation time (or found after the fact)."""

    alert_type: AlertType
    severity: Severity
    scope: str  # identifies the breach: one alert per scope (per episode, for conditions)
    message: str
    measured: float
    threshold: float
    unit: str
    market: str | None = None
    run_id: str | None = None
    once: bool = True  # an event (a run, a deadline): alerts once ever; else a condition alerting once per episode
    ongoing: bool = True  # still breached now; False: found after the fact (alerted, and resolved at ``ended_at``)
    ended_at: dt.datetime | None = None


def _minutes(seconds: float) -> float:
    return round(seconds / 60, 2)


def run_breaches(
    runs: Iterable[RunInfo], now: dt.datetime, registry: MarketRegistry, thresholds: SlaThresholds
) -> list[Breach]:
    """Runs over their SLA target: running ones while they run, finished ones (in the window) after the fact."""
    breaches: list[Breach] = []
    for run in runs:
        seconds = run.duration_seconds(now)
        limit = sla_minutes_for(run, registry, thresholds)
        if seconds is None or seconds <= limit * 60:
            continue
        if run.finished and (run.ended_at is None or run.ended_at < now - thresholds.window):
            continue
        kind = AlertType.GLOBAL_DURATION if run.market == ALL_MARKETS else AlertType.RUN_DURATION
        state = f"finished ({run.status.lower()})" if run.finished else "still running"
        breaches.append(
            Breach(
                alert_type=kind,
                severity=Severity.HIGH,
                scope=f"{kind.value}:{run.run_id}",
                message=f"{run.market} run {run.run_id} ({run.job_name}) {state} after {_minutes(seconds)} min, "
                f"over its {limit} min SLA",
                measured=_minutes(seconds),
                threshold=float(limit),
                unit="minutes",
                market=run.market,
                run_id=run.run_id,
                ongoing=not run.finished,
                ended_at=run.ended_at if run.finished else None,
            )
        )
    return breaches


def deadline_breaches(
    now: dt.datetime,
    tick: dt.datetime,
    markets: Sequence[Market],
    progress: Mapping[str, MarketProgress],
    thresholds: SlaThresholds,
) -> list[Breach]:
    """Markets not loaded by ``tick`` + their SLA (and the whole import by ``tick`` + the global SLA)."""
    breaches: list[Breach] = []
    stamp = tick.strftime("%Y-%m-%dT%H:%MZ")
    done: list[dt.datetime | None] = []
    for market in markets:
        state = progress.get(market.code, MarketProgress(market.code, (), {}))
        loaded = state.complete_at()
        done.append(loaded)
        deadline = tick + dt.timedelta(minutes=market.sla_minutes)
        if now < deadline or (loaded is not None and loaded <= deadline):
            continue
        missing = state.missing()
        if loaded is not None:
            why = f"loaded at {loaded:%H:%M:%S}Z, after its {deadline:%H:%M}Z deadline"
        elif not state.known_partitions and not state.loaded_at:
            why = f"not loaded by its {deadline:%H:%M}Z deadline: no file loaded since the {tick:%H:%M}Z schedule"
        else:
            why = f"not loaded by its {deadline:%H:%M}Z deadline: {len(missing)} file(s) not loaded since {tick:%H:%M}Z"
        breaches.append(
            Breach(
                alert_type=AlertType.MARKET_DEADLINE,
                severity=Severity.HIGH,
                scope=f"{AlertType.MARKET_DEADLINE.value}:{market.code}:{stamp}",
                message=f"{market.code} {why}",
                measured=_minutes(((loaded or now) - tick).total_seconds()),
                threshold=float(market.sla_minutes),
                unit="minutes",
                market=market.code,
                ongoing=loaded is None,
                ended_at=loaded,
            )
        )
    global_deadline = tick + dt.timedelta(minutes=thresholds.global_sla_minutes)
    late = [m.code for m, at in zip(markets, done, strict=True) if at is None or at > global_deadline]
    if markets and now >= global_deadline and late:
        finished = all(at is not None for at in done)
        last = max((at for at in done if at is not None), default=now) if finished else now
        breaches.append(
            Breach(
                alert_type=AlertType.GLOBAL_DURATION,
                severity=Severity.HIGH,
                scope=f"global_deadline:{stamp}",
                message=f"all-markets import not done {thresholds.global_sla_minutes} min after the {tick:%H:%M}Z "
                f"schedule: {', '.join(late)} late",
                measured=_minutes((last - tick).total_seconds()),
                threshold=float(thresholds.global_sla_minutes),
                unit="minutes",
                market=ALL_MARKETS,
                ongoing=not finished,
                ended_at=last if finished else None,
            )
        )
    return breaches


def window_breaches(
    runs: Sequence[RunInfo], now: dt.datetime, registry: MarketRegistry, thresholds: SlaThresholds
) -> list[Breach]:
    """Conditions over the window: error rate (runs, rows), processing rate per market, SLA compliance."""
    since = now - thresholds.window
    recent = [r for r in runs if (r.ended_at or r.created_at) >= since or not r.finished]
    finished = [r for r in recent if r.finished]
    hours = thresholds.window.total_seconds() / 3600
    breaches: list[Breach] = []

    def condition(kind: AlertType, severity: Severity, key: str, message: str, measured: float, limit: float) -> None:
        unit = "records/s" if kind == AlertType.PROCESSING_RATE else "ratio"
        market = key if kind == AlertType.PROCESSING_RATE else None
        breaches.append(
            Breach(kind, severity, f"{kind.value}:{key}", message, round(measured, 4), limit, unit, market, once=False)
        )

    if len(finished) >= thresholds.min_runs_for_rates:
        failed = sum(r.status == "FAILURE" for r in finished)
        rate = failed / len(finished)
        if rate > thresholds.max_error_rate:
            condition(
                AlertType.ERROR_RATE,
                Severity.HIGH,
                "runs",
                f"{failed} of {len(finished)} runs failed in the last {hours:g} h ({rate:.0%} > "
                f"{thresholds.max_error_rate:.0%})",
                rate,
                thresholds.max_error_rate,
            )
    read = sum(a.rows_read for r in finished for a in r.audit.values())
    rejected = sum(a.rows_rejected for r in finished for a in r.audit.values())
    if read and rejected / read > thresholds.max_error_rate:
        condition(
            AlertType.ERROR_RATE,
            Severity.HIGH,
            "rows",
            f"{rejected:,} of {read:,} rows rejected in the last {hours:g} h ({rejected / read:.1%} > "
            f"{thresholds.max_error_rate:.0%})",
            rejected / read,
            thresholds.max_error_rate,
        )
    for market in registry:
        audits = [r.audit[market.code] for r in finished if market.code in r.audit]
        rows = sum(a.rows_read for a in audits)
        seconds = sum(a.processing_seconds for a in audits)
        if (
            rows >= thresholds.min_records_for_rate
            and seconds > 0
            and rows / seconds < thresholds.min_records_per_second
        ):
            condition(
                AlertType.PROCESSING_RATE,
                Severity.MEDIUM,
                market.code,
                f"{market.code} processed {rows / seconds:,.0f} records/s in the last {hours:g} h "
                f"(< {thresholds.min_records_per_second:,.0f})",
                rows / seconds,
                thresholds.min_records_per_second,
            )
    judged = [r for r in recent if r.finished or is_sla_breached(r, now, registry, thresholds)]
    compliance = compliance_rate(recent, now, registry, thresholds)
    if (
        len(judged) >= thresholds.min_runs_for_rates
        and compliance is not None
        and compliance < thresholds.min_compliance
    ):
        condition(
            AlertType.SLA_COMPLIANCE,
            Severity.CRITICAL,
            "all",
            f"SLA compliance {compliance:.0%} in the last {hours:g} h (< {thresholds.min_compliance:.0%})",
            compliance,
            thresholds.min_compliance,
        )
    return breaches


def evaluate(
    now: dt.datetime,
    registry: MarketRegistry,
    schedule: DailySchedule,
    runs: Sequence[RunInfo],
    progress: Mapping[str, MarketProgress],
    thresholds: SlaThresholds | None = None,
) -> list[Breach]:
    """Every breach holding at ``now``: runs over SLA, late markets, and the window's rates and compliance.

    Args:
        now: the evaluation time (UTC).
        registry: the markets and their SLA targets.
        schedule: the nightly import's schedule; deadlines are its last tick + each market's SLA.
        runs: import runs created in the window, plus any still running.
        progress: per market code, what was loaded since the last tick.
        thresholds: the limits; the old system's by default.
    """
    limits = thresholds or SlaThresholds()
    tick = schedule.last_tick(now)
    return [
        *run_breaches(runs, now, registry, limits),
        *deadline_breaches(now, tick, list(registry), progress, limits),
        *window_breaches(runs, now, registry, limits),
    ]
