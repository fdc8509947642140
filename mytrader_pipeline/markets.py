"""The market registry: every market's folder, format hints, priorities and SLA, loaded from config."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic
import pydantic_core
import yaml
from pydantic import ConfigDict, Field

SHIPPED_CONFIG = "markets.yaml"

PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class MarketConfigError(ValueError):
    """The market configuration is malformed."""


# strict: YAML gives typed values, so "5" for a number or true for a count is a mistake, not something to coerce.
# A pydantic dataclass, not a BaseModel: callers derive variants with ``dataclasses.replace`` (validated again).
@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid"))
class Market:
    """One market: where its files live and how its imports are run and judged."""

    code: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]
    folder: str
    currency: str
    source_priority: PositiveInt
    schedule_priority: PositiveInt
    batch_size: PositiveInt
    max_concurrency: PositiveInt
    sla_minutes: PositiveInt
    expected_rate: PositiveInt
    timeframe: str = "1d"
    date_format: str | None = None
    max_rejected_fraction: Fraction = 0.10
    # Retries of retryable failures: first after retry_delay_seconds, doubling, capped, with +/- jitter (a fraction).
    max_retries: Annotated[int, Field(ge=0)] = 3
    retry_delay_seconds: Annotated[float, Field(ge=0)] = 60.0
    retry_max_delay_seconds: Annotated[float, Field(ge=0)] = 1800.0
    retry_jitter: Fraction = 0.1
    # How long one import run may take before run monitoring stops it; None: derived (see max_runtime_seconds).
    max_runtime_minutes: PositiveInt | None = None
    # The Celery queue of this market's import steps when MYTRADER_EXECUTOR=celery (`mytrader worker --queue`).
    celery_queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "dagster"
    # Files per run of an asset backfill (Dagster's BackfillPolicy.multi_run); None: one run for the whole backfill
    # on one machine, runs of MYTRADER_MAX_FILES_PER_RUN files under MYTRADER_EXECUTOR=celery (one worker step each).
    backfill_files_per_run: PositiveInt | None = None

    @pydantic.field_validator("folder")
    @classmethod
    def _plain_folder(cls, folder: str) -> str:
        if Path(folder).name != folder or folder in ("", ".", ".."):
            raise ValueError("must be a plain folder name")
        return folder

    @pydantic.field_validator("retry_max_delay_seconds")
    @classmethod
    def _cap_not_below_first_delay(cls, cap: float, info: pydantic.ValidationInfo) -> float:
        first = info.data.get("retry_delay_seconds")
        if first is not None and cap < first:
            raise ValueError(f"must be >= retry_delay_seconds ({first})")
        return cap

    @property
    def max_runtime_seconds(self) -> int:
        """How long one import run may take before run monitoring stops it and fails it (tag ``dagster/max_runtime``).

        ``max_runtime_minutes`` when set. Otherwise the longest a healthy run can take: every attempt its files may
        make (the first and ``max_retries`` retries), each within the SLA, plus the backoff waits between them; with
        the defaults about 4x the SLA (BIST: 188 min). Anything longer is stuck (a lock wait, a stalled connection or
        disk), not slow, and the SLA alert fired long before. Not shorter: stopping a slow but healthy run throws
        away its file in flight.
        """
        if self.max_runtime_minutes is not None:
            return self.max_runtime_minutes * 60
        waits = sum(min(self.retry_delay_seconds * 2**n, self.retry_max_delay_seconds) for n in range(self.max_retries))
        return math.ceil(round((self.max_retries + 1) * self.sla_minutes * 60 + waits * (1 + self.retry_jitter), 3))

    @property
    def data_source(self) -> str:
        """The name recorded as the rows' data source."""
        return f"STOCK_SCRAPPER_{self.code}"

    @property
    def asset_name(self) -> str:
        """The Dagster asset name of this market's prices (e.g. ``bist_prices``)."""
        return f"{self.code.lower()}_prices"

    def directory(self, data_root: Path) -> Path:
        """This market's CSV folder under ``data_root``."""
        return data_root / self.folder


@dataclasses.dataclass(frozen=True)
class MarketRegistry:
    """All configured markets, in scheduling-priority order."""

    markets: tuple[Market, ...]

    def __iter__(self) -> Iterator[Market]:
        return iter(self.markets)

    def __len__(self) -> int:
        return len(self.markets)

    @property
    def codes(self) -> list[str]:
        """Market codes in scheduling-priority order."""
        return [m.code for m in self.markets]

    def get(self, code: str) -> Market:
        """The market with ``code`` (case-insensitive); ``KeyError`` naming the known codes."""
        wanted = code.upper()
        for market in self.markets:
            if market.code == wanted:
                return market
        raise KeyError(f"unknown market {code!r}; known markets: {', '.join(self.codes)}")

    def select(self, codes: str | list[str] | None) -> list[Market]:
        """Markets named in ``codes`` (comma-separated or a list); all when empty."""
        if not codes:
            return list(self.markets)
        names = codes.split(",") if isinstance(codes, str) else codes
        return [self.get(name.strip()) for name in names if name.strip()]


class MarketsFile(pydantic.BaseModel):
    """One market config file: ``defaults`` merged under every entry of ``markets`` (an entry per market code)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    defaults: dict[str, Any] = Field(default_factory=dict)
    markets: list[dict[str, Any]] = Field(default_factory=list)

    @pydantic.field_validator("defaults", "markets", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if value is None:
            return {} if info.field_name == "defaults" else []
        return value

    @pydantic.field_validator("markets")
    @classmethod
    def _every_entry_has_a_code(cls, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any("code" not in entry for entry in entries):
            raise ValueError("every market entry needs a 'code'")
        return entries


def _reason(error: pydantic_core.ErrorDetails) -> str:
    """What is wrong with one value, in the words of the config file (not pydantic's)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}, got {error['input']!r}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}, got {error['input']!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {error['input']!r}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {error['input']!r}"
    if kind == "string_type":
        return f"must be a string, got {error['input']!r}"
    if kind in ("dict_type", "model_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_pattern_mismatch" and error["loc"] and error["loc"][0] == "celery_queue":
        return f"must be letters, digits, '_', '.', '-' (at most 64), got {error['input']!r}"
    if kind == "string_pattern_mismatch":
        return f"must be upper-case letters, digits, _ (a letter first, at most 32), got {error['input']!r}"
    if kind in ("missing", "missing_argument"):
        return "is required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return "is not a known setting"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"]


def _read_file(text: str, origin: str) -> MarketsFile:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MarketConfigError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise MarketConfigError(f"{origin}: expected a mapping with 'defaults' and 'markets'")
    try:
        return MarketsFile.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            section, *rest = error["loc"]
            where = f"entry {int(rest[0]) + 1} of 'markets'" if section == "markets" and rest else f"field {section!r}"
            reason = _reason(error)
            if error["type"] == "extra_forbidden":
                reason = "is not a section (a config file has 'defaults' and 'markets')"
            problems.append(f"{where}: {reason}")
        raise MarketConfigError(f"{origin}: {'; '.join(problems)}") from exc


def _build_market(entry: dict[str, Any], defaults: dict[str, Any], origin: str) -> Market:
    """``entry`` merged over ``defaults`` as a Market; errors name the market (or the defaults) and the field."""
    try:
        return Market(**{**defaults, **entry})
    except pydantic.ValidationError as exc:
        code = entry.get("code")
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            where = f"market {code!r}"
            if field in defaults and field not in entry:
                where = f"defaults (for market {code!r})"
            problems.append(f"{where}, field {field!r}: {_reason(error)}")
        raise MarketConfigError(f"{origin}: {'; '.join(problems)}") from exc


def load_markets(override_file: Path | str | None = None) -> MarketRegistry:
    """Load the shipped registry, then merge ``override_file`` over it.

    An override file has the same shape as the shipped one: its ``defaults`` replace shipped defaults, an entry
    whose ``code`` exists is merged over that market, and a new code adds a market. A bad value raises
    ``MarketConfigError`` naming the file, the market (or ``defaults``) and the field, e.g.
    ``markets.yaml: market 'BIST', field 'batch_size': must be >= 1, got 0``.
    """
    shipped = _read_file(
        resources.files("mytrader_pipeline").joinpath(SHIPPED_CONFIG).read_text("utf-8"), SHIPPED_CONFIG
    )
    defaults = dict(shipped.defaults)
    entries: dict[str, dict[str, Any]] = {e["code"]: dict(e) for e in shipped.markets}
    origin = SHIPPED_CONFIG
    if override_file:
        path = Path(override_file)
        origin = str(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise MarketConfigError(f"cannot read market config {path}: {exc}") from exc
        override = _read_file(text, origin)
        defaults.update(override.defaults)
        for entry in override.markets:
            code = str(entry["code"]).upper()
            entries[code] = {**entries.get(code, {}), **entry, "code": code}
    markets = [_build_market(entry, defaults, origin) for entry in entries.values()]
    for attr in ("folder", "schedule_priority"):
        seen: dict[Any, str] = {}
        for market in markets:
            value = getattr(market, attr)
            if value in seen:
                raise MarketConfigError(
                    f"{origin}: market {market.code!r}, field {attr!r}: {value!r} is also market {seen[value]!r}'s;"
                    f" two markets cannot share a {attr}"
                )
            seen[value] = market.code
    return MarketRegistry(tuple(sorted(markets, key=lambda m: m.schedule_priority)))
