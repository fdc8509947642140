"""The FastAPI app: the old ``/api/batch-processing`` endpoints over the service layer, bearer-token protected."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mytrader_pipeline.api.models import AllMarketsImportBody, DiscardBody, MarketImportBody, RetryBody, ScheduleBody
from mytrader_pipeline.api.settings import ApiSettings
from mytrader_pipeline.core.limits import REJECTED_ROWS_DEFAULT, REJECTED_ROWS_LIMIT
from mytrader_pipeline.core.request_errors import RequestError
from mytrader_pipeline.core.responses import (
    DeadLetterItemResponse,
    DeadLetterPage,
    HealthResponse,
    JobAccepted,
    JobStatusResponse,
    MonitoringStatsResponse,
    RejectedRowsResponse,
    RetryAccepted,
    ScheduleResponse,
)
from mytrader_pipeline.service.operations import Operations

PREFIX = "/api/batch-processing"
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="A run id or an all-markets job id")]
MarketCode = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$", description="e.g. BIST")]
ScheduleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
ItemId = Annotated[int, Path(ge=1, le=2**62)]

_bearer = HTTPBearer(auto_error=False, description="MYTRADER_API_TOKEN; required by every call that changes state")


def create_app(settings: ApiSettings | None = None, operations: Operations | None = None) -> FastAPI:
    """The REST app; ``settings`` default to the environment, read now; ``operations`` to ones built from them."""
    settings = settings or ApiSettings.from_settings()
    service = operations or Operations(settings.service)
    app = FastAPI(
        title="MyTrader batch processing",
        version="1.0",
        description="The old Hangfire batch-processing endpoints, served over the Dagster deployment. Calls that "
        "change state need `Authorization: Bearer <MYTRADER_API_TOKEN>`.",
    )

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if not settings.api_token:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "mutating calls are disabled: no MYTRADER_API_TOKEN is configured on the server",
            )
        if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), settings.api_token.encode()
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <MYTRADER_API_TOKEN>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    mutating = [Depends(authorized)]

    @app.exception_handler(RequestError)
    def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": type(exc).__name__, "detail": exc.message})

    @app.post(
        f"{PREFIX}/markets/{{market}}/import",
        status_code=202,
        dependencies=mutating,
        tags=["jobs"],
        response_model=JobAccepted,
    )
    def import_market(market: MarketCode, body: MarketImportBody | None = None) -> JobAccepted:
        """Start the import of one market's files; returns the job id to follow."""
        job_id = service.import_market((body or MarketImportBody()).to_request(market))
        return JobAccepted(job_id=job_id, market=market.upper(), status_url=f"{PREFIX}/jobs/{job_id}/status")

    @app.post(
        f"{PREFIX}/all-markets/import",
        status_code=202,
        dependencies=mutating,
        tags=["jobs"],
        response_model=JobAccepted,
        response_model_exclude_none=True,
    )
    def import_all_markets(body: AllMarketsImportBody | None = None) -> JobAccepted:
        """Start the import of every market: one ``import_all_markets`` run, one op per market (run id = job id)."""
        job_id = service.import_all_markets((body or AllMarketsImportBody()).to_request())
        return JobAccepted(job_id=job_id, status_url=f"{PREFIX}/jobs/{job_id}/status")

    @app.get(f"{PREFIX}/jobs/{{jobId}}/status", tags=["jobs"], response_model=JobStatusResponse)
    def job_status(jobId: JobId) -> JobStatusResponse:
        """State and progress of a job (the old ``BatchJobStatus``)."""
        return service.status(jobId).response()

    @app.post(f"{PREFIX}/jobs/{{jobId}}/cancel", dependencies=mutating, tags=["jobs"], response_model=JobStatusResponse)
    def cancel_job(jobId: JobId) -> JobStatusResponse:
        """Stop a queued or running job."""
        return service.cancel(jobId).response()

    @app.post(
        f"{PREFIX}/jobs/{{jobId}}/retry",
        status_code=202,
        dependencies=mutating,
        tags=["jobs"],
        response_model=RetryAccepted,
    )
    def retry_job(jobId: JobId, body: RetryBody | None = None) -> RetryAccepted:
        """Re-execute a failed or cancelled job from its failure."""
        return RetryAccepted(job_id=jobId, retry_job_ids=service.retry(jobId, (body or RetryBody()).to_policy()))

    @app.get(f"{PREFIX}/monitoring/stats", tags=["monitoring"], response_model=MonitoringStatsResponse)
    def monitoring_stats(
        startDate: Annotated[dt.date | None, Query()] = None,
        endDate: Annotated[dt.date | None, Query()] = None,
    ) -> MonitoringStatsResponse:
        """Job statistics over a date range (default: the last 7 days)."""
        end = endDate or dt.datetime.now(dt.UTC).date()
        start = startDate or end - dt.timedelta(days=7)
        if start > end:
            raise HTTPException(422, [{"loc": ["query", "startDate"], "msg": "startDate is after endDate"}])
        return service.stats(start, end)

    @app.get(f"{PREFIX}/dead-letter-queue", tags=["dead-letter queue"], response_model=DeadLetterPage)
    def dead_letter_queue(
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        pageSize: Annotated[int, Query(ge=1, le=500)] = 50,
        market: Annotated[
            str | None, Query(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$", description="e.g. BIST, or ALL")
        ] = None,
        state: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    ) -> DeadLetterPage:
        """A page of failed work items."""
        return service.dlq_list(page, pageSize, market, state)

    @app.get(
        f"{PREFIX}/dead-letter-queue/{{itemId}}", tags=["dead-letter queue"], response_model=DeadLetterItemResponse
    )
    def dead_letter_item(itemId: ItemId) -> DeadLetterItemResponse:
        """One failed work item in full."""
        return service.dlq_show(itemId)

    @app.post(
        f"{PREFIX}/dead-letter-queue/{{itemId}}/replay",
        status_code=202,
        dependencies=mutating,
        tags=["dead-letter queue"],
        response_model=DeadLetterItemResponse,
    )
    def replay_item(itemId: ItemId) -> DeadLetterItemResponse:
        """Re-execute only the item's failed partitions."""
        return service.dlq_replay(itemId)

    @app.post(
        f"{PREFIX}/dead-letter-queue/{{itemId}}/discard",
        dependencies=mutating,
        tags=["dead-letter queue"],
        response_model=DeadLetterItemResponse,
    )
    def discard_item(itemId: ItemId, body: DiscardBody) -> DeadLetterItemResponse:
        """Drop the item, recording who and why."""
        return service.dlq_discard(itemId, body.reason, body.discarded_by)

    @app.get(
        f"{PREFIX}/markets/{{market}}/rejected-rows",
        tags=["monitoring"],
        response_model=RejectedRowsResponse,
        responses={404: {"description": "Unknown market, or a file never loaded in it"}},
    )
    def rejected_rows(
        market: MarketCode,
        file: Annotated[
            str | None,
            Query(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f]+$", description="THYAO.csv or BIST/THYAO.csv"),
        ] = None,
        limit: Annotated[
            int, Query(ge=REJECTED_ROWS_LIMIT.low, le=REJECTED_ROWS_LIMIT.high, description=str(REJECTED_ROWS_LIMIT))
        ] = REJECTED_ROWS_DEFAULT,
    ) -> RejectedRowsResponse:
        """Rejected rows of the market's current loads (each file's latest successful load), newest load first."""
        return service.rejected_rows(market, file, limit)

    @app.get(
        f"{PREFIX}/health",
        tags=["monitoring"],
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "Unhealthy, with the reasons"}},
    )
    def health() -> JSONResponse:
        """Healthy, degraded or unhealthy, with reasons (HTTP 503 when unhealthy)."""
        report = service.health()
        unhealthy = report.status.lower() == "unhealthy"
        return JSONResponse(status_code=503 if unhealthy else 200, content=report.as_json())

    @app.post(
        f"{PREFIX}/schedules/all-markets",
        status_code=201,
        dependencies=mutating,
        tags=["schedules"],
        response_model=ScheduleResponse,
    )
    def add_schedule(body: ScheduleBody) -> ScheduleResponse:
        """Run the all-markets import on a cron schedule in a time zone."""
        return service.add_schedule(body.import_request.to_request(), body.cron_expression, body.time_zone).response()

    @app.get(f"{PREFIX}/schedules", tags=["schedules"], response_model=list[ScheduleResponse])
    def list_schedules() -> list[ScheduleResponse]:
        """Every recurring import added through the API or the CLI."""
        return [s.response() for s in service.list_schedules()]

    @app.delete(f"{PREFIX}/schedules/{{recurringJobId}}", status_code=204, dependencies=mutating, tags=["schedules"])
    def remove_schedule(recurringJobId: ScheduleId) -> Response:
        """Remove a recurring import."""
        service.remove_schedule(recurringJobId)
        return Response(status_code=204)

    return app
