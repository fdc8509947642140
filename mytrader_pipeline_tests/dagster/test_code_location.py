"""The code location Dagster loads (``mytrader_pipeline.definitions:defs``) follows ``MYTRADER_MARKETS_FILE``."""

from pathlib import Path

import dagster as dg
import pytest

from mytrader_pipeline.definitions import defs

NEW_MARKET = """
markets:
  - code: LSE
    folder: LSE
    currency: GBP
    source_priority: 7
    schedule_priority: 5
"""


def names(definitions: dg.Definitions) -> set[str]:
    # Loading consults the current instance's state storage: give it a live one (an earlier test's may be gone).
    with dg.instance_for_test():
        repository = definitions.get_repository_def()
    return {
        *repository.job_names,
        *(s.name for s in repository.sensor_defs),
        *(s.name for s in repository.schedule_defs),
        *(key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()),
    }


def test_the_shipped_registry_gives_the_four_markets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MYTRADER_MARKETS_FILE", raising=False)
    loaded = names(defs())
    assert {"import_bist", "import_crypto", "import_nasdaq", "import_nyse", "import_all_markets"} <= loaded
    assert not any("lse" in name for name in loaded)


def test_a_market_added_in_the_override_file_gets_its_asset_job_sensor_and_schedule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    override = tmp_path / "markets.yaml"
    override.write_text(NEW_MARKET, encoding="utf-8")
    monkeypatch.setenv("MYTRADER_MARKETS_FILE", str(override))
    assert {"lse_prices", "import_lse", "lse_file_sensor", "lse_import_schedule"} <= names(defs())


@pytest.mark.parametrize(("value", "durable"), [(None, False), ("true", True), ("0", False)])
def test_synchronous_commit_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, durable: bool
) -> None:
    if value is None:
        monkeypatch.delenv("MYTRADER_SYNCHRONOUS_COMMIT", raising=False)
    else:
        monkeypatch.setenv("MYTRADER_SYNCHRONOUS_COMMIT", value)
    monkeypatch.setenv("MYTRADER_DATABASE_URL", "sqlite:///unused.db")
    warehouse = defs().resources["warehouse"]
    assert warehouse.synchronous_commit is durable
