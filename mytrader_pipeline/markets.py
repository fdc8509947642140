"""The market registry: every market's folder, format hints, priorities and SLA, loaded from config."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SHIPPED_CONFIG = "markets.yaml"
_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")


class MarketConfigError(ValueError):
    """The market configuration is malformed."""


@dataclasses.dataclass(frozen=True)
class Market:
    """One market: where its files live and how its imports are run and judged."""

    code: str
    folder: str
    currency: str
    source_priority: int
    schedule_priority: int
    batch_size: int
    max_concurrency: int
    sla_minutes: int
    expected_rate: int
    timeframe: str = "1d"
    date_format: str | None = None
    max_rejected_fraction: float = 0.10
    # Retries of retryable failures: first after retry_delay_seconds, doubling, capped, with +/- jitter (a fraction).
    max_retries: int = 3
    retry_delay_seconds: float = 60.0
    retry_max_delay_seconds: float = 1800.0
    retry_jitter: float = 0.1
    # How long one import run may take before run monitoring stops it; None: derived (see max_runtime_seconds).
    max_runtime_minutes: int | None = None

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


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MarketConfigError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise MarketConfigError(f"{origin}: expected a mapping with 'defaults' and 'markets'")
    return raw


def _build_market(entry: Mapping[str, Any], defaults: Mapping[str, Any], origin: str) -> Market:
    fields = {f.name for f in dataclasses.fields(Market)}
    merged = {**defaults, **entry}
    unknown = set(merged) - fields
    if unknown:
        raise MarketConfigError(f"{origin}: unknown market setting(s) {sorted(unknown)}")
    missing = [f.name for f in dataclasses.fields(Market) if f.name not in merged and f.default is dataclasses.MISSING]
    if missing:
        raise MarketConfigError(f"{origin}: market {entry.get('code', '?')!r} lacks {missing}")
    market = Market(**merged)
    if not _CODE_RE.match(market.code):
        raise MarketConfigError(f"{origin}: market code {market.code!r} must be upper-case letters, digits, _")
    for name in (
        "source_priority",
        "schedule_priority",
        "batch_size",
        "max_concurrency",
        "sla_minutes",
        "expected_rate",
    ):
        value = getattr(market, name)
        if not isinstance(value, int) or value < 1:
            raise MarketConfigError(f"{origin}: market {market.code}: {name} must be a positive integer, got {value!r}")
    if not 0 <= market.max_rejected_fraction <= 1:
        raise MarketConfigError(f"{origin}: market {market.code}: max_rejected_fraction must be within 0..1")
    if not isinstance(market.max_retries, int) or market.max_retries < 0:
        raise MarketConfigError(f"{origin}: market {market.code}: max_retries must be an integer >= 0")
    if not 0 <= market.retry_delay_seconds <= market.retry_max_delay_seconds or not 0 <= market.retry_jitter <= 1:
        raise MarketConfigError(
            f"{origin}: market {market.code}: need 0 <= retry_delay_seconds <= retry_max_delay_seconds, jitter 0..1"
        )
    if market.max_runtime_minutes is not None and (
        not isinstance(market.max_runtime_minutes, int) or market.max_runtime_minutes < 1
    ):
        raise MarketConfigError(
            f"{origin}: market {market.code}: max_runtime_minutes must be a positive integer or null (derived)"
        )
    if Path(market.folder).name != market.folder or market.folder in ("", ".", ".."):
        raise MarketConfigError(f"{origin}: market {market.code}: folder must be a plain folder name")
    return market


def load_markets(override_file: Path | str | None = None) -> MarketRegistry:
    """Load the shipped registry, then merge ``override_file`` over it.

    An override file has the same shape as the shipped one: its ``defaults`` replace shipped defaults, an entry
    whose ``code`` exists is merged over that market, and a new code adds a market.
    """
    shipped = _read_yaml(
        resources.files("mytrader_pipeline").joinpath(SHIPPED_CONFIG).read_text("utf-8"), SHIPPED_CONFIG
    )
    defaults: dict[str, Any] = dict(shipped.get("defaults") or {})
    entries: dict[str, dict[str, Any]] = {e["code"]: dict(e) for e in shipped.get("markets") or []}
    origin = SHIPPED_CONFIG
    if override_file:
        path = Path(override_file)
        origin = str(path)
        try:
            override = _read_yaml(path.read_text("utf-8"), origin)
        except OSError as exc:
            raise MarketConfigError(f"cannot read market config {path}: {exc}") from exc
        defaults.update(override.get("defaults") or {})
        for entry in override.get("markets") or []:
            if not isinstance(entry, dict) or "code" not in entry:
                raise MarketConfigError(f"{origin}: every market entry needs a 'code'")
            code = str(entry["code"]).upper()
            entries[code] = {**entries.get(code, {}), **entry, "code": code}
    markets = [_build_market(entry, defaults, origin) for entry in entries.values()]
    for attr in ("folder", "schedule_priority"):
        values = [getattr(m, attr) for m in markets]
        if len(set(values)) != len(values):
            raise MarketConfigError(f"{origin}: two markets share a {attr}")
    return MarketRegistry(tuple(sorted(markets, key=lambda m: m.schedule_priority)))
