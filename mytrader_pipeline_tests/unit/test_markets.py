"""The market registry: shipped values, override files merged over them, and malformed configs refused."""

import dataclasses
from pathlib import Path

import pytest

from mytrader_pipeline.markets import Market, MarketConfigError, load_markets

# code: (folder, currency, source priority, schedule priority, batch size, max concurrency, SLA min, rate rec/s)
SHIPPED: dict[str, tuple[str, str, int, int, int, int, int, int]] = {
    "BIST": ("BIST", "TRY", 1, 1, 800, 3, 45, 800),
    "CRYPTO": ("Crypto", "USDT", 6, 2, 1500, 4, 20, 1500),
    "NASDAQ": ("NASDAQ", "USD", 4, 3, 1500, 4, 25, 1500),
    "NYSE": ("NYSE", "USD", 5, 4, 1500, 4, 25, 1500),
}


def _values(market: Market) -> tuple[str, str, int, int, int, int, int, int]:
    return (
        market.folder,
        market.currency,
        market.source_priority,
        market.schedule_priority,
        market.batch_size,
        market.max_concurrency,
        market.sla_minutes,
        market.expected_rate,
    )


def _override(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "markets.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("code", list(SHIPPED))
def test_shipped_market_values(code: str) -> None:
    market = load_markets().get(code)
    assert _values(market) == SHIPPED[code]
    assert (market.timeframe, market.date_format, market.max_rejected_fraction) == ("1d", None, 0.10)


def test_markets_are_in_scheduling_order_with_asset_names() -> None:
    registry = load_markets()
    assert registry.codes == ["BIST", "CRYPTO", "NASDAQ", "NYSE"]
    assert [m.asset_name for m in registry] == ["bist_prices", "crypto_prices", "nasdaq_prices", "nyse_prices"]
    assert len(registry) == 4


def test_market_helpers(tmp_path: Path) -> None:
    crypto = load_markets().get("crypto")
    assert crypto.code == "CRYPTO"
    assert crypto.directory(tmp_path) == tmp_path / "Crypto"
    assert crypto.data_source == "STOCK_SCRAPPER_CRYPTO"


@pytest.mark.parametrize(("code", "minutes"), [("BIST", 188), ("CRYPTO", 88), ("NASDAQ", 108), ("NYSE", 108)])
def test_the_max_runtime_is_by_default_every_attempt_within_the_sla_plus_the_backoff_waits(
    code: str, minutes: int
) -> None:
    market = load_markets().get(code)
    assert market.max_runtime_minutes is None  # shipped: derived
    # 4 attempts (the first and 3 retries) of up to the SLA each, and waits of 1 + 2 + 4 minutes, +10% jitter.
    assert market.max_runtime_seconds == 4 * market.sla_minutes * 60 + round(7 * 60 * 1.1)
    assert round(market.max_runtime_seconds / 60) == minutes


def test_the_max_runtime_follows_the_retry_policy_and_a_set_value_wins(tmp_path: Path) -> None:
    registry = load_markets(
        _override(
            tmp_path,
            "markets:\n"
            "  - {code: CRYPTO, max_retries: 0}\n"
            "  - {code: NYSE, retry_delay_seconds: 600, retry_max_delay_seconds: 900, retry_jitter: 0}\n"
            "  - {code: BIST, max_runtime_minutes: 90}\n",
        )
    )
    assert registry.get("CRYPTO").max_runtime_seconds == 20 * 60  # one attempt, no wait
    assert registry.get("NYSE").max_runtime_seconds == 4 * 25 * 60 + 600 + 900 + 900  # waits capped at 15 min
    assert registry.get("BIST").max_runtime_seconds == 90 * 60


def test_unknown_market_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="BIST, CRYPTO, NASDAQ, NYSE"):
        load_markets().get("LSE")


def test_select_by_comma_list_or_all() -> None:
    registry = load_markets()
    assert [m.code for m in registry.select("nyse, bist")] == ["NYSE", "BIST"]
    assert [m.code for m in registry.select(["CRYPTO"])] == ["CRYPTO"]
    assert registry.select(None) == list(registry)
    assert registry.select("") == list(registry)


def test_an_override_merges_over_a_market_and_defaults(tmp_path: Path) -> None:
    path = _override(
        tmp_path,
        """
defaults:
  batch_size: 2000
markets:
  - code: NYSE
    source_priority: 2
    date_format: "%m/%d/%Y"
""",
    )
    registry = load_markets(path)
    nyse = registry.get("NYSE")
    assert (nyse.source_priority, nyse.date_format, nyse.currency, nyse.folder) == (2, "%m/%d/%Y", "USD", "NYSE")
    assert nyse.batch_size == 2000  # the new default, where the market names none
    assert registry.get("BIST").batch_size == 800  # a market's own setting beats any default
    assert registry.get("CRYPTO").batch_size == 2000


def test_one_config_entry_adds_a_market(tmp_path: Path) -> None:
    path = _override(
        tmp_path,
        """
markets:
  - code: lse
    folder: LSE
    currency: GBP
    source_priority: 7
    schedule_priority: 5
""",
    )
    registry = load_markets(path)
    assert registry.codes == ["BIST", "CRYPTO", "NASDAQ", "NYSE", "LSE"]
    lse = registry.get("LSE")
    assert (lse.folder, lse.currency, lse.asset_name) == ("LSE", "GBP", "lse_prices")
    assert (lse.batch_size, lse.max_concurrency, lse.sla_minutes, lse.expected_rate) == (1500, 4, 25, 1500)


def test_an_empty_override_changes_nothing(tmp_path: Path) -> None:
    assert load_markets(_override(tmp_path, "")) == load_markets()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("markets: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping with 'defaults' and 'markets'"),
        ("market:\n  - code: X\n", "field 'market': is not a section"),
        ("markets: 3\n", "field 'markets': must be a list"),
        ("markets:\n  - 3\n", "entry 1 of 'markets': must be a mapping"),
        ("markets:\n  - folder: X\n", "needs a 'code'"),
        ("markets:\n  - code: NYSE\n    colour: blue\n", "market 'NYSE', field 'colour': is not a known setting"),
        ("markets:\n  - code: LSE\n    folder: LSE\n", "market 'LSE', field 'currency': is required"),
        ("markets:\n  - code: NYSE\n    source_priority: 0\n", "market 'NYSE', field 'source_priority': must be >= 1"),
        ("markets:\n  - code: NYSE\n    batch_size: many\n", "market 'NYSE', field 'batch_size': must be an integer"),
        ("markets:\n  - code: NYSE\n    batch_size: true\n", "market 'NYSE', field 'batch_size': must be an integer"),
        ("markets:\n  - code: NYSE\n    max_rejected_fraction: 1.5\n", "field 'max_rejected_fraction': must be <= 1"),
        ("markets:\n  - code: NYSE\n    folder: ../etc\n", "market 'NYSE', field 'folder': must be a plain folder"),
        ("markets:\n  - code: NYSE\n    folder: BIST\n", "market 'NYSE', field 'folder': .* share a folder"),
        ("markets:\n  - code: NYSE\n    schedule_priority: 1\n", "field 'schedule_priority': .* share a schedule_"),
        ("markets:\n  - code: NYSE\n    max_retries: -1\n", "market 'NYSE', field 'max_retries': must be >= 0"),
        ("defaults:\n  retry_jitter: 2\n", r"defaults \(for market 'BIST'\), field 'retry_jitter': must be <= 1"),
        (
            "markets:\n  - {code: NYSE, retry_delay_seconds: 100, retry_max_delay_seconds: 50}\n",
            "market 'NYSE', field 'retry_max_delay_seconds': must be >= retry_delay_seconds",
        ),
        (
            "markets:\n  - code: NYSE\n    max_runtime_minutes: 0\n",
            "market 'NYSE', field 'max_runtime_minutes': must be >= 1",
        ),
        ("defaults:\n  max_runtime_minutes: soon\n", "defaults .*, field 'max_runtime_minutes': must be an integer"),
        (
            "markets:\n  - {code: 'L-SE', folder: X, currency: G, source_priority: 7, schedule_priority: 9}\n",
            "market 'L-SE', field 'code': must be upper-case",
        ),
    ],
    ids=[
        "yaml",
        "not-mapping",
        "unknown-section",
        "markets-not-list",
        "entry-not-mapping",
        "no-code",
        "unknown-setting",
        "missing-settings",
        "zero-priority",
        "non-integer",
        "bool-for-integer",
        "fraction",
        "folder-path",
        "shared-folder",
        "shared-schedule",
        "retries",
        "jitter",
        "delay-above-cap",
        "zero-max-runtime",
        "non-integer-max-runtime",
        "bad-code",
    ],
)
def test_a_bad_config_is_a_market_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MarketConfigError, match=message) as info:
        load_markets(_override(tmp_path, text))
    assert str(info.value).startswith(str(tmp_path / "markets.yaml"))  # names the file at fault


def test_a_missing_override_file_is_a_market_config_error(tmp_path: Path) -> None:
    with pytest.raises(MarketConfigError, match="cannot read market config"):
        load_markets(tmp_path / "absent.yaml")


def test_a_bad_value_message_names_the_file_the_market_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(MarketConfigError) as info:
        load_markets(_override(tmp_path, "markets:\n  - code: BIST\n    batch_size: 0\n"))
    assert str(info.value) == f"{tmp_path / 'markets.yaml'}: market 'BIST', field 'batch_size': must be >= 1, got 0"


def test_markets_are_frozen_and_revalidated_when_replaced() -> None:
    nyse = load_markets().get("NYSE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        nyse.batch_size = 1  # type: ignore[misc]
    assert dataclasses.replace(nyse, batch_size=10).batch_size == 10
    with pytest.raises(ValueError, match="batch_size"):
        dataclasses.replace(nyse, batch_size=0)
