"""The GraphQL gateway to a running Dagster deployment: dagster-graphql's client plus the raw queries it lacks."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from mytrader_pipeline.core.request_errors import (
    Conflict,
    DeploymentUnavailable,
    InvalidRequest,
    NotFound,
    RequestError,
)

RUN_FIELDS = """
    runId jobName status creationTime startTime endTime updateTime rootRunId parentRunId canTerminate
    tags { key value }
"""

RUN_QUERY = f"""
query MytraderRun($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {RUN_FIELDS} }}
    ... on RunNotFoundError {{ message }}
    ... on PythonError {{ message }}
  }}
}}
"""

RUNS_QUERY = f"""
query MytraderRuns($filter: RunsFilter, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{
    __typename
    ... on Runs {{ results {{ {RUN_FIELDS} }} }}
    ... on InvalidPipelineRunsFilterError {{ message }}
    ... on PythonError {{ message }}
  }}
}}
"""

LOGS_QUERY = """
query MytraderRunLogs($runId: ID!, $afterCursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp level stepKey eventType }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

REPOSITORIES_QUERY = """
query MytraderRepositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } sensors { name sensorState { status } } }
    }
    ... on PythonError { message }
  }
}
"""

PARTITION_KEYS_QUERY = """
query MytraderPartitionKeys($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode { partitionKeys }
    ... on AssetNotFoundError { message }
  }
}
"""

ADD_PARTITION_MUTATION = """
mutation MytraderAddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

REEXECUTE_MUTATION = """
mutation MytraderReexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
  }
}
"""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One Dagster run as the GraphQL API describes it."""

    run_id: str
    job_name: str
    status: str  # Dagster's RunStatus: QUEUED, NOT_STARTED, STARTING, STARTED, SUCCESS, FAILURE, CANCELING, CANCELED
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    root_run_id: str | None
    parent_run_id: str | None
    can_terminate: bool
    tags: Mapping[str, str]

    @classmethod
    def from_graphql(cls, node: Mapping[str, Any]) -> RunInfo:
        """Build from a ``Run`` node carrying ``RUN_FIELDS``."""
        return cls(
            run_id=node["runId"],
            job_name=node["jobName"],
            status=node["status"],
            created_at=_timestamp(node["creationTime"]) or dt.datetime.now(dt.UTC),
            started_at=_timestamp(node.get("startTime")),
            ended_at=_timestamp(node.get("endTime")),
            root_run_id=node.get("rootRunId"),
            parent_run_id=node.get("parentRunId"),
            can_terminate=bool(node.get("canTerminate")),
            tags={t["key"]: t["value"] for t in node.get("tags") or []},
        )


@dataclasses.dataclass(frozen=True)
class RunEvent:
    """One event of a run's log: its type, message, level and time (and error message, for failures)."""

    kind: str
    message: str
    level: str
    timestamp: dt.datetime | None
    error: str | None


def _timestamp(value: float | str | None) -> dt.datetime | None:
    if value in (None, ""):
        return None
    seconds = float(value)
    if seconds > 1e11:  # event timestamps are milliseconds, run times seconds
        seconds /= 1000
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class DagsterGateway:
    """Talks to one deployment's web server (``url`` like ``http://127.0.0.1:3000``) over GraphQL."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(f"not a Dagster web server URL: {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.graphql_url = f"{self.url}/graphql"
        self.timeout = timeout
        self.client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            timeout=int(timeout),
            path_prefix=parts.path.rstrip("/"),
        )
        self._session = requests.Session()

    # -- raw GraphQL -------------------------------------------------------------------------------------------

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL document and return its ``data``; ``DeploymentUnavailable`` when unreachable."""
        try:
            response = self._session.post(
                self.graphql_url, json={"query": query, "variables": dict(variables or {})}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise DeploymentUnavailable(f"Dagster web server at {self.url} is unreachable: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 404:
            raise DeploymentUnavailable(f"Dagster web server at {self.url} answered HTTP {response.status_code}")
        body = response.json()
        if body.get("errors"):
            raise RequestError(f"GraphQL error: {'; '.join(e.get('message', '?') for e in body['errors'])}")
        return body["data"]

    # -- runs --------------------------------------------------------------------------------------------------

    def run(self, run_id: str) -> RunInfo:
        """The run ``run_id``; ``NotFound`` when the deployment has no such run."""
        result = self.query(RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] == "Run":
            return RunInfo.from_graphql(result)
        if result["__typename"] == "RunNotFoundError":
            raise NotFound(f"no run with id {run_id!r}")
        raise RequestError(result.get("message", result["__typename"]))

    def runs(
        self, *, tags: Mapping[str, str] | None = None, run_ids: list[str] | None = None, limit: int = 500
    ) -> list[RunInfo]:
        """Runs carrying every tag in ``tags`` (and with an id in ``run_ids``, if given), newest first."""
        run_filter: dict[str, Any] = {}
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if run_ids is not None:
            run_filter["runIds"] = run_ids
        result = self.query(RUNS_QUERY, {"filter": run_filter, "limit": limit})["runsOrError"]
        if result["__typename"] != "Runs":
            raise RequestError(result.get("message", result["__typename"]))
        return [RunInfo.from_graphql(node) for node in result["results"]]

    def events(self, run_id: str, *, page_size: int = 1000, max_pages: int = 50) -> Iterator[RunEvent]:
        """The run's events in order (bounded: at most ``page_size * max_pages``)."""
        cursor: str | None = None
        for _ in range(max_pages):
            result = self.query(LOGS_QUERY, {"runId": run_id, "afterCursor": cursor, "limit": page_size})["logsForRun"]
            if result["__typename"] == "RunNotFoundError":
                raise NotFound(f"no run with id {run_id!r}")
            if result["__typename"] != "EventConnection":
                raise RequestError(result.get("message", result["__typename"]))
            for event in result["events"]:
                error = event.get("error") or {}
                yield RunEvent(
                    kind=event["__typename"],
                    message=event.get("message") or "",
                    level=event.get("level") or "",
                    timestamp=_timestamp(event.get("timestamp")),
                    error=error.get("message"),
                )
            cursor = result["cursor"]
            if not result["hasMore"]:
                return

    def launch(self, job_name: str, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Submit a run of ``job_name``; returns its run id. A config error is an ``InvalidRequest``."""
        try:
            return self.client.submit_job_execution(job_name, run_config=dict(run_config), tags=dict(tags))
        except DagsterGraphQLClientError as exc:
            raise self._translate(exc, f"launching {job_name}") from exc

    def terminate(self, run_id: str) -> None:
        """Ask the deployment to stop ``run_id`` (``Conflict`` when it cannot be terminated)."""
        try:
            self.client.terminate_run(run_id)
        except DagsterGraphQLClientError as exc:
            raise self._translate(exc, f"cancelling {run_id}") from exc

    def reexecute(self, run_id: str, *, strategy: str = "FROM_FAILURE", tags: Mapping[str, str] | None = None) -> str:
        """Re-execute ``run_id`` (by default only the steps that failed or did not run); returns the new run id."""
        params: dict[str, Any] = {"parentRunId": run_id, "strategy": strategy}
        if tags:
            params["extraTags"] = [{"key": k, "value": v} for k, v in tags.items()]
        result = self.query(REEXECUTE_MUTATION, {"params": params})["launchRunReexecution"]
        if result["__typename"] == "LaunchRunSuccess":
            return result["run"]["runId"]
        if result["__typename"] == "RunConfigValidationInvalid":
            raise InvalidRequest("; ".join(e["message"] for e in result["errors"]))
        message = result.get("message") or result["__typename"]
        if "not found" in message.lower():
            raise NotFound(message)
        raise Conflict(f"cannot re-execute {run_id}: {message}")

    # -- code location -----------------------------------------------------------------------------------------

    def repositories(self) -> list[dict[str, Any]]:
        """Each repository of the deployment: name, location, jobs, sensors with their state."""
        result = self.query(REPOSITORIES_QUERY)["repositoriesOrError"]
        if result["__typename"] != "RepositoryConnection":
            raise DeploymentUnavailable(f"code location not loaded: {result.get('message', result['__typename'])}")
        return result["nodes"]

    def repository_of_job(self, job_name: str) -> dict[str, str]:
        """The repository selector (location and repository name) that defines ``job_name``."""
        for node in self.repositories():
            if any(job["name"] == job_name for job in node["jobs"]):
                return {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"]}
        raise DeploymentUnavailable(f"no job {job_name!r} in the deployment at {self.url}")

    def partition_keys(self, asset_key: str) -> list[str]:
        """The partition keys of asset ``asset_key`` in the deployment's order."""
        result = self.query(PARTITION_KEYS_QUERY, {"assetKey": {"path": [asset_key]}})["assetNodeOrError"]
        if result["__typename"] != "AssetNode":
            raise DeploymentUnavailable(f"no asset {asset_key!r} in the deployment at {self.url}")
        return list(result["partitionKeys"])

    def add_partition(self, selector: Mapping[str, str], partitions_def: str, key: str) -> None:
        """Add dynamic partition ``key`` to ``partitions_def`` (already present is fine)."""
        result = self.query(ADD_PARTITION_MUTATION, {"selector": dict(selector), "name": partitions_def, "key": key})
        kind = result["addDynamicPartition"]["__typename"]
        if kind not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise RequestError(f"adding partition {key!r} to {partitions_def}: {result['addDynamicPartition']}")

    @staticmethod
    def _translate(exc: DagsterGraphQLClientError, doing: str) -> RequestError:
        kind = str(exc.args[0]) if exc.args else ""
        body = exc.args[1] if len(exc.args) > 1 else exc.body
        detail = body if isinstance(body, str) else str(body or exc)
        if kind in ("RunConfigValidationInvalid", "PipelineConfigurationInvalid"):
            messages = [e.get("message", str(e)) for e in body] if isinstance(body, list) else [detail]
            return InvalidRequest(f"{doing}: invalid run config: {'; '.join(messages)}")
        if kind in ("RunNotFoundError", "PipelineNotFoundError"):
            return NotFound(f"{doing}: {detail}")
        if kind == "JobNotFoundError":
            return DeploymentUnavailable(f"{doing}: {detail}")
        if kind == "TerminateRunFailure":
            return Conflict(f"{doing}: {detail}")
        if "connecting to url" in str(exc).lower() or "connection" in kind.lower():
            return DeploymentUnavailable(f"{doing}: {exc}")
        return RequestError(f"{doing}: {kind}: {detail}")
