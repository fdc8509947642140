"""File-arrival sensors: one per market, loading new and changed CSV files in batched single-run ranges."""

import dagster as dg

from mytrader_pipeline.core.discovery import file_path, scan_market
from mytrader_pipeline.core.fingerprints import FileCursor, batch_run_key, detect_changes
from mytrader_pipeline.core.ranges import plan_ranges
from mytrader_pipeline.defs.executors import CELERY_MAX_FILES_PER_RUN, uses_celery
from mytrader_pipeline.defs.jobs import import_job_name, market_run_tags, partition_range_tags
from mytrader_pipeline.defs.partitions import files_partitions_name, unregistered
from mytrader_pipeline.defs.resources import DataRootResource
from mytrader_pipeline.markets import Market
from mytrader_pipeline.settings import Settings

TRIGGER_TAG = "mytrader/trigger"
# Issue 12: the daily files are in the warehouse within 60 s of landing. A change waits for the next tick (interval
# + up to 5 s of the sensor daemon's loop), then the run queue (2 s) and a worker's start (~5 s idle): at 30 s up to
# ~42 s of the minute went to waiting by construction; at 10 s at most ~22 s. A tick without changes costs a stat of
# each file of the folder (SHA-256 only for the files whose size or mtime moved). See benchmarks/README.md.
DEFAULT_INTERVAL_SECONDS = 10
# On one machine a market's new or changed files are one run: each run pays a worker process start (~2.5 s of CPU)
# on the cores the loads share. At scale 3 (666 files) on 2 cores, runs of 1024 files loaded the tree in 59.9 s from
# its landing where runs of 128 (8 runs) took 83.5 s (benchmarks/README.md); earlier, 128 against 64 on the seed tree
# gave 0.87-1.00x against 1.21-1.34x the in-process load. Under Celery, runs are cut at CELERY_MAX_FILES_PER_RUN so
# they spread over the workers (``max_files_per_run``).
DEFAULT_MAX_FILES_PER_RUN = 1024


def max_files_per_run(settings: Settings) -> int:
    """Files in one sensor or per-market schedule run: ``MYTRADER_MAX_FILES_PER_RUN``, else 1024 on one machine and
    128 under ``MYTRADER_EXECUTOR=celery``."""
    if settings.max_files_per_run:
        return settings.max_files_per_run
    return CELERY_MAX_FILES_PER_RUN if uses_celery(settings) else DEFAULT_MAX_FILES_PER_RUN


def file_sensor_name(market: Market) -> str:
    """The sensor watching ``market``'s folder (e.g. ``bist_file_sensor``)."""
    return f"{market.code.lower()}_file_sensor"


def build_file_sensor(
    market: Market,
    *,
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    max_files_per_run: int = DEFAULT_MAX_FILES_PER_RUN,
    running: bool = True,
) -> dg.SensorDefinition:
    """Watches ``<data root>/<market folder>/*.csv``: new or changed files are loaded, touched ones are not.

    Each tick compares the folder with the cursor (size and mtime first, SHA-256 to confirm), registers new files as
    partitions, and requests one run per contiguous range of at most ``max_files_per_run`` partitions. A deleted
    file is logged and recorded as an observation of its partition; its loaded rows stay. ``running``: whether
    a new deployment starts with the sensor on (the UI can still switch it).
    """

    @dg.sensor(
        name=file_sensor_name(market),
        job_name=import_job_name(market),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description=f"Loads new and changed {market.folder}/*.csv files under the data root into "
        f"{market.asset_name}, at most {max_files_per_run} files per run.",
    )
    def _file_sensor(context: dg.SensorEvaluationContext, data_root: DataRootResource) -> dg.SensorResult:
        previous = FileCursor.from_json(context.cursor)
        changes = detect_changes(previous, scan_market(data_root.path, market))
        partitions_def = files_partitions_name(market)
        known = context.instance.get_dynamic_partitions(partitions_def)
        known_set = set(known)
        new_partitions = unregistered(known, sorted(changes.states))
        ranges = plan_ranges([*known, *new_partitions], changes.to_load, changes.states, max_files_per_run)
        requests = [
            dg.RunRequest(
                run_key=batch_run_key(market.code, previous.batches + i, keys, changes.states),
                tags={
                    **market_run_tags(market),
                    **partition_range_tags(keys[0], keys[-1]),
                    TRIGGER_TAG: "file_sensor",
                },
            )
            for i, keys in enumerate(ranges)
        ]
        observations = [
            dg.AssetObservation(
                asset_key=market.asset_name,
                partition=key if key in known_set else None,
                metadata={
                    "file_deleted": dg.MetadataValue.path(file_path(market.folder, key)),
                    "data_kept": dg.MetadataValue.bool(True),
                },
            )
            for key in changes.deleted
        ]
        for key in changes.deleted:
            context.log.warning(f"{file_path(market.folder, key)} was deleted; its loaded rows are kept")
        if changes.touched:
            context.log.info(f"{len(changes.touched)} file(s) touched with unchanged content: not reloaded")
        if changes.to_load:
            context.log.info(
                f"{len(changes.new)} new and {len(changes.changed)} changed file(s) -> {len(requests)} run(s)"
            )
        cursor = FileCursor(files=changes.states, batches=previous.batches + len(requests)).to_json()
        partition_requests = (
            [dg.AddDynamicPartitionsRequest(partitions_def_name=partitions_def, partition_keys=new_partitions)]
            if new_partitions
            else []
        )
        if not requests:
            return dg.SensorResult(
                skip_reason=f"no new or changed {market.folder} file",
                cursor=cursor,
                dynamic_partitions_requests=partition_requests,
                asset_events=observations,
            )
        return dg.SensorResult(
            run_requests=requests,
            cursor=cursor,
            dynamic_partitions_requests=partition_requests,
            asset_events=observations,
        )

    return _file_sensor
