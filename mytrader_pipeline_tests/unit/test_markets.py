"""The market registry: shipped values, override files merged over them, and malformed configs refused."""

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
        ("- just\n- a list\n", "expected a mapping"),
        ("markets:\n  - folder: X\n", "needs a 'code'"),
        ("markets:\n  - code: NYSE\n    colour: blue\n", "unknown market setting"),
        ("markets:\n  - code: LSE\n    folder: LSE\n", "lacks"),
        ("markets:\n  - code: NYSE\n    source_priority: 0\n", "source_priority must be a positive integer"),
        ("markets:\n  - code: NYSE\n    batch_size: many\n", "batch_size must be a positive integer"),
        ("markets:\n  - code: NYSE\n    max_rejected_fraction: 1.5\n", "max_rejected_fraction"),
        ("markets:\n  - code: NYSE\n    folder: ../etc\n", "plain folder name"),
        ("markets:\n  - code: NYSE\n    folder: BIST\n", "share a folder"),
        ("markets:\n  - code: NYSE\n    schedule_priority: 1\n", "share a schedule_priority"),
        ("markets:\n  - code: NYSE\n    max_retries: -1\n", "max_retries"),
        ("defaults:\n  retry_jitter: 2\n", "jitter"),
        ("markets:\n  - code: NYSE\n    max_runtime_minutes: 0\n", "max_runtime_minutes must be a positive integer"),
        ("defaults:\n  max_runtime_minutes: soon\n", "max_runtime_minutes must be a positive integer"),
        (
            "markets:\n  - {code: 'L-SE', folder: X, currency: G, source_priority: 7, schedule_priority: 9}\n",
            "upper-case",
        ),
    ],
    ids=[
        "yaml",
        "not-mapping",
        "no-code",
        "unknown-setting",
        "missing-settings",
        "zero-priority",
        "non-integer",
        "fraction",
        "folder-path",
        "shared-folder",
        "shared-schedule",
        "retries",
        "jitter",
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
