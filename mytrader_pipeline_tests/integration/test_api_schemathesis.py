"""Property-based requests generated from the REST API's own OpenAPI document: none may end in a server error, and
every successful answer matches the response schema the document declares for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import response_schema_conformance
from schemathesis.core.failures import FailureGroup

from mytrader_pipeline.api.settings import ApiSettings
from mytrader_pipeline_tests.integration.conftest import Deployment
from mytrader_pipeline_tests.integration.test_api import AUTH, TOKEN, serve, service_settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def api_url(dagster_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # An empty data root: generated import requests are validated all the way down but launch no runs.
    empty_root: Path = tmp_path_factory.mktemp("empty_data_root")
    yield from serve(ApiSettings(api_token=TOKEN, service=service_settings(dagster_deployment, empty_root)))


def test_generated_requests_never_get_a_server_error(api_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=AUTH, timeout=60)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            elif response.status_code < 300:
                try:
                    case.validate_response(response, checks=[response_schema_conformance])
                except (FailureGroup, AssertionError) as exc:  # one failure, or several grouped
                    failures.append(f"{case.method} {case.formatted_path}: answer off its schema: {str(exc)[:300]}")

        call()
    assert not failures, "\n".join(failures)
