"""Failed files as failed partitions: the planned-but-not-materialized attempts Dagster reads as failures.

Dagster (open-source storage) shows a partition failed when its latest planned materialization belongs to a run that
failed and no materialization followed it. It reads only per-partition planned events, and writes them only for the
runs of asset jobs (planned when the run is created). So two kinds of runs report them here for the files they did
not load: a run of ``mytrader run``'s instance, which plans one event over its whole range
(``mark_unmaterialized_failed``), and the ``import_all_markets`` op job, whose ops load assets Dagster does not know
they load (``report_failed_attempts``). Each failed file's class and reason is an observation on its partition
(``defs.assets.failed_file_observations``).
"""

import logging
from collections.abc import Iterable

import dagster as dg
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent  # not re-exported at the top level


def report_failed_attempts(
    instance: dg.DagsterInstance, run_id: str, job_name: str, step_key: str, asset_key: dg.AssetKey, keys: Iterable[str]
) -> list[str]:
    """Log a planned materialization of ``asset_key`` for each of ``keys`` in ``run_id``, a run that will not
    materialize them: once the run has ended failed, Dagster shows them as failed partitions. Returns the keys."""
    reported = list(keys)
    for key in reported:
        event = DagsterEvent.build_asset_materialization_planned_event(
            job_name, step_key, AssetMaterializationPlannedData(asset_key, partition=key)
        )
        instance.report_dagster_event(event, run_id, logging.DEBUG)
    return reported


def mark_unmaterialized_failed(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, asset_key: dg.AssetKey, keys: list[str]
) -> list[str]:
    """After a failed run planned as one event over its range: a planned event for each key it did not materialize.

    So the files a failed run did not load are failed partitions, as they are on an instance that logs planned
    events per partition. Returns those keys; none for a run that succeeded or an instance that logs planned events
    per partition anyway.
    """
    storage = instance.event_log_storage
    if result.success or not storage.supports_partition_subset_in_asset_materialization_planned_events:
        return []
    done = {event.partition for event in result.get_asset_materialization_events() if event.asset_key == asset_key}
    failed = [key for key in keys if key not in done]
    return report_failed_attempts(instance, result.run_id, result.job_def.name, asset_key.path[-1], asset_key, failed)
