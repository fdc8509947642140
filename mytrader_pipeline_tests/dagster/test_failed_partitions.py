"""A file that fails while others of its run load shows as a failed partition, with its error class and reason on
that partition; the files that loaded show materialized, and a later good load clears the failure. The same for a
market's own import job and for the ``import_all_markets`` op job."""

from pathlib import Path

import dagster as dg

from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline_tests.dagster.test_all_markets_dlq import run_all_markets
from mytrader_pipeline_tests.dagster.test_asset_job_dlq import write_good
from mytrader_pipeline_tests.dagster.test_failure_dlq import BROKEN, NASDAQ, defs_for, run_keys

KEY = dg.AssetKey(NASDAQ.asset_name)
KEYS = ["AAA.csv", "BAD.csv", "GONE.csv"]


def statuses(instance: dg.DagsterInstance, keys: list[str] = KEYS) -> dict[str, dg.AssetPartitionStatus | None]:
    """Each partition's status as the UI's partition bar shows it (Dagster's partition status)."""
    found = instance.get_status_by_partition(KEY, keys, files_partitions(NASDAQ))
    assert found is not None
    return dict(found)


def failure_of(instance: dg.DagsterInstance, partition: str) -> dg.AssetObservation:
    """The latest observation of ``partition``: what the UI lists with its events."""
    records = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=[partition]), 1)
    [record] = records.records
    observation = record.asset_observation
    assert observation is not None
    return observation


def test_a_failed_file_is_a_failed_partition_with_its_class_and_reason(pg_url: str, data_root: Path) -> None:
    write_good(data_root, NASDAQ.folder, "AAA.csv")
    (data_root / NASDAQ.folder / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)  # GONE.csv: a partition whose file is missing
    with dg.instance_for_test() as instance:
        assert not run_keys(defs, instance, KEYS).success
        assert statuses(instance) == {
            "AAA.csv": dg.AssetPartitionStatus.MATERIALIZED,
            "BAD.csv": dg.AssetPartitionStatus.FAILED,
            "GONE.csv": dg.AssetPartitionStatus.FAILED,
        }
        bad, gone = failure_of(instance, "BAD.csv"), failure_of(instance, "GONE.csv")
        assert bad.metadata["load_status"].value == "failed"
        assert bad.metadata["error_class"].value == "unknown_format"
        assert bad.metadata["retryable"].value is False
        assert "header" in str(bad.metadata["reason"].value).lower()
        assert bad.description is not None and bad.description.startswith("NASDAQ/BAD.csv failed to load: ")
        assert bad.metadata["source_file"].value == "NASDAQ/BAD.csv"
        assert gone.metadata["error_class"].value == "file_missing"
        no_failure = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=["AAA.csv"]), 1)
        assert no_failure.records == []

        # The files are mended: the next load clears the failed partitions.
        write_good(data_root, NASDAQ.folder, "BAD.csv")
        write_good(data_root, NASDAQ.folder, "GONE.csv")
        assert run_keys(defs, instance, KEYS).success
        assert set(statuses(instance).values()) == {dg.AssetPartitionStatus.MATERIALIZED}


def test_a_file_the_all_markets_job_failed_is_a_failed_partition_of_its_market(pg_url: str, data_root: Path) -> None:
    write_good(data_root, NASDAQ.folder, "AAA.csv")
    (data_root / NASDAQ.folder / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    keys = ["AAA.csv", "BAD.csv"]
    defs = defs_for(pg_url, data_root)
    with dg.instance_for_test() as instance:
        result = run_all_markets(defs, instance)
        assert not result.success
        assert statuses(instance, keys) == {
            "AAA.csv": dg.AssetPartitionStatus.MATERIALIZED,
            "BAD.csv": dg.AssetPartitionStatus.FAILED,  # the op job's, though Dagster did not plan it
        }
        bad = failure_of(instance, "BAD.csv")
        assert bad.metadata["error_class"].value == "unknown_format"
        assert bad.metadata["source_file"].value == "NASDAQ/BAD.csv"

        # The file is mended: the next all-markets run loads it (AAA.csv unchanged: skipped) and clears the failure.
        write_good(data_root, NASDAQ.folder, "BAD.csv")
        assert run_all_markets(defs, instance).success
        assert statuses(instance, keys) == {k: dg.AssetPartitionStatus.MATERIALIZED for k in keys}
