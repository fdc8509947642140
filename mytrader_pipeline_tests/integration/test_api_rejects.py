"""``GET /markets/{market}/rejected-rows`` over a PostgreSQL warehouse loaded from files with bad rows: camelCase
rows of the current loads, no token needed, 404 for an unknown market or file, 422 for a bad limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from mytrader_pipeline.api.settings import ApiSettings
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline_tests.integration.test_api import P, serve
from mytrader_pipeline_tests.integration.test_rejects_listing import Bad, database_url, load_two_files, stored
from mytrader_pipeline_tests.unit.test_row_problems import HOSTILE

pytestmark = [pytest.mark.postgres]
ROW_FIELDS = {
    "sourceFile", "partitionKey", "fileImportId", "runId", "loadedAt", "lineNumber", "columnName", "checkName",
    "reason", "rawLine",
}  # fmt: skip


@pytest.fixture
def api(pg_engine: sa.Engine, data_root: Path) -> Iterator[str]:
    """The REST app on the warehouse alone (no deployment: the listing reads only the warehouse), with no token."""
    settings = ServiceSettings(
        dagster_url="http://127.0.0.1:9", data_root=data_root, database_url=database_url(pg_engine)
    )
    yield from serve(ApiSettings(api_token=None, service=settings))


@pytest.fixture
def loaded(pg_engine: sa.Engine, data_root: Path) -> dict[str, Bad]:
    """Two NYSE files with bad rows loaded into the API's warehouse (the query is tested on SQLite too)."""
    return load_two_files(pg_engine, data_root)


def test_rejected_rows_answer_camel_case_rows_of_the_current_loads_without_a_token(
    api: str, loaded: dict[str, Bad]
) -> None:
    response = requests.get(f"{api}{P}/markets/nyse/rejected-rows", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["market"], body["file"], body["limit"], body["total"]) == ("NYSE", None, 50, 2 * len(HOSTILE))
    assert len(body["rows"]) == 2 * len(HOSTILE)
    assert all(set(row) == ROW_FIELDS for row in body["rows"])
    assert [row["partitionKey"] for row in body["rows"]] == ["KO.csv"] * len(HOSTILE) + ["IBM.csv"] * len(HOSTILE)
    line, (check, _, raw) = next(iter(loaded["KO.csv"].items()))
    first = body["rows"][0]
    assert (first["runId"], first["lineNumber"], first["checkName"], first["rawLine"]) == ("run-2", line, check,
                                                                                            stored(raw))  # fmt: skip


def test_file_and_limit_narrow_the_answer(api: str, loaded: dict[str, Bad]) -> None:
    response = requests.get(
        f"{api}{P}/markets/NYSE/rejected-rows", params={"file": "NYSE/IBM.csv", "limit": 2}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["file"], body["limit"], body["total"]) == ("NYSE/IBM.csv", 2, len(loaded["IBM.csv"]))
    assert [(r["partitionKey"], r["lineNumber"]) for r in body["rows"]] == [
        ("IBM.csv", line) for line in list(loaded["IBM.csv"])[:2]
    ]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("LSE", {}, 404),
        ("NYSE", {"file": "AAPL.csv"}, 404),
        ("NYSE", {"limit": 0}, 422),
        ("NYSE", {"limit": 1001}, 422),
        ("NYSE", {"limit": "many"}, 422),
        ("NYSE", {"file": "IBM\x00.csv"}, 422),
    ],
    ids=["unknown-market", "file-never-loaded", "limit-0", "limit-1001", "limit-not-a-number", "file-with-nul"],
)
def test_a_bad_request_is_refused(api: str, loaded: dict[str, Bad], path: str, params: dict[str, object],
                                  status: int) -> None:  # fmt: skip
    response = requests.get(f"{api}{P}/markets/{path}/rejected-rows", params=params, timeout=30)
    assert response.status_code == status, response.text
    if status == 404:
        assert response.json()["error"] in ("UnknownMarket", "NotFound")


def test_the_openapi_document_declares_the_camel_case_answer(api: str) -> None:
    document = requests.get(f"{api}/openapi.json", timeout=30).json()
    operation = document["paths"][f"{P}/markets/{{market}}/rejected-rows"]["get"]
    assert "security" not in operation  # a read: no token
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/RejectedRowsResponse"}
    row = document["components"]["schemas"]["RejectedRowResponse"]["properties"]
    assert set(row) == ROW_FIELDS
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"], limit["schema"]["default"]) == (1, 1000, 50)
