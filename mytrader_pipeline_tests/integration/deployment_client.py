"""Talking to a running ``dagster dev`` from the deployment tests: GraphQL, waits, launches and run checks."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import requests

from mytrader_pipeline.defs.jobs import market_pool, market_run_tags
from mytrader_pipeline.markets import Market

READY_TIMEOUT_SECONDS = 180
REPOSITORIES = "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name jobs { name } } } } }"
ASSET_JOB = "__ASSET_JOB"  # the job Dagster runs for assets materialized outside any job of ours (the UI, backfills)
# The mutation behind an asset page's Materialize button on partitions (a partition backfill).
BACKFILL = """
mutation Materialize($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""
T = TypeVar("T")


def post_graphql(url: str, query: str, variables: dict[str, object] | None = None) -> requests.Response:
    """POST a GraphQL document to the web server at ``url``; its response, unchecked."""
    return requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)


def graphql(url: str, query: str, variables: dict[str, object] | None = None) -> dict[str, Any]:
    """Run a GraphQL document against the web server at ``url``; returns ``data`` (the test fails on ``errors``)."""
    response = post_graphql(url, query, variables)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def launch_partition_backfill(url: str, asset: str, keys: list[str]) -> dict[str, str]:
    """What ``asset``'s page sends when Materialize is pressed on partitions ``keys``: the mutation's answer."""
    params = {"partitionNames": keys, "assetSelection": [{"path": [asset]}], "fromFailure": False}
    return graphql(url, BACKFILL, {"params": params})["launchPartitionBackfill"]


def wait_for(what: str, probe: Callable[[], T | None], seconds: float) -> T:
    """``probe()``'s first truthy value, polled every second until ``seconds`` pass (then the test fails naming
    ``what``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def all_finished(runs: Sequence[dg.DagsterRun], count: int) -> list[dg.DagsterRun] | None:
    """``runs`` once there are ``count`` of them and every one has finished; None before (a ``wait_for`` probe)."""
    return list(runs) if len(runs) == count and all(r.is_finished for r in runs) else None


def assert_ran_one_at_a_time_in_market_pool(
    instance: dg.DagsterInstance, runs: Sequence[dg.DagsterRun], market: Market, limit: int
) -> list[dg.RunRecord]:
    """Every run succeeded with ``market``'s tags in its pool, the pool's limit is ``limit`` (1: the runs may not
    overlap) and no run started before the one before it ended. Returns the runs' records, first started first.
    """
    for run in runs:
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        assert {k: run.tags[k] for k in market_run_tags(market)} == market_run_tags(market)
        assert run.run_op_concurrency is not None and run.run_op_concurrency.all_pools == {market_pool(market)}
    assert instance.event_log_storage.get_concurrency_info(market_pool(market)).slot_count == limit
    records = sorted(
        instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs])), key=lambda r: r.start_time or 0.0
    )
    for before, after in itertools.pairwise(records):
        assert before.end_time is not None and after.start_time is not None
        assert after.start_time >= before.end_time  # one run of the market at a time
    return records


# -- the processes of a deployment ---------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait until the web server at ``url`` (started as ``process``, logging to ``log_path``) has loaded its code."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            data = requests.post(f"{url}/graphql", json={"query": REPOSITORIES}, timeout=5).json()["data"]
            if data["repositoriesOrError"]["__typename"] == "RepositoryConnection":
                return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"dagster dev not ready after {READY_TIMEOUT_SECONDS}s:\n{log_path.read_text()[-4000:]}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group of ``dagster dev`` (web server, daemon, code server, run workers)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
