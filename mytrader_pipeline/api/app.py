"""The FastAPI app: the old ``/api/batch-processing`` endpoints over the service layer, bearer-token protected."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mytrader_pipeline.api.models import AllMarketsImportBody, DiscardBody, MarketImportBody, RetryBody, ScheduleBody
from mytrader_pipeline.api.settings import ApiSettings
from mytrader_pipeline.core.request_errors import RequestError
from mytrader_pipeline.service.operations import Operations

PREFIX = "/api/batch-processing"
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="A run id or an all-markets job id")]
MarketCode = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$", description="e.g. BIST")]
ScheduleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
ItemId = Annotated[int, Path(ge=1, le=2**62)]

_bearer = HTTPBearer(auto_error=False, description="MYTRADER_API_TOKEN; required by every call that changes state")


def _camel(name: str) -> str:
    """``sla_compliance_rate`` -> ``slaComplianceRate``: the old API's field names."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


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

    @app.post(f"{PREFIX}/markets/{{market}}/import", status_code=202, dependencies=mutating, tags=["jobs"])
    def import_market(market: MarketCode, body: MarketImportBody | None = None) -> dict[str, Any]:
        """Start the import of one market's files; returns the job id to follow."""
        job_id = service.import_market((body or MarketImportBody()).to_request(market))
        return {"jobId": job_id, "market": market.upper(), "statusUrl": f"{PREFIX}/jobs/{job_id}/status"}

    @app.post(f"{PREFIX}/all-markets/import", status_code=202, dependencies=mutating, tags=["jobs"])
    def import_all_markets(body: AllMarketsImportBody | None = None) -> dict[str, Any]:
        """Start the import of every market: one ``import_all_markets`` run, one op per market (run id = job id)."""
        job_id = service.import_all_markets((body or AllMarketsImportBody()).to_request())
        return {"jobId": job_id, "statusUrl": f"{PREFIX}/jobs/{job_id}/status"}

    @app.get(f"{PREFIX}/jobs/{{jobId}}/status", tags=["jobs"])
    def job_status(jobId: JobId) -> dict[str, Any]:
        """State and progress of a job (the old ``BatchJobStatus``)."""
        return service.status(jobId).as_api()

    @app.post(f"{PREFIX}/jobs/{{jobId}}/cancel", dependencies=mutating, tags=["jobs"])
    def cancel_job(jobId: JobId) -> dict[str, Any]:
        """Stop a queued or running job."""
        return service.cancel(jobId).as_api()

    @app.post(f"{PREFIX}/jobs/{{jobId}}/retry", status_code=202, dependencies=mutating, tags=["jobs"])
    def retry_job(jobId: JobId, body: RetryBody | None = None) -> dict[str, Any]:
        """Re-execute a failed or cancelled job from its failure."""
        new_ids = service.retry(jobId, (body or RetryBody()).to_policy())
        return {"jobId": jobId, "retryJobIds": new_ids}

    @app.get(f"{PREFIX}/monitoring/stats", tags=["monitoring"])
    def monitoring_stats(
        startDate: Annotated[dt.date | None, Query()] = None,
        endDate: Annotated[dt.date | None, Query()] = None,
    ) -> dict[str, Any]:
        """Job statistics over a date range (default: the last 7 days)."""
        end = endDate or dt.datetime.now(dt.UTC).date()
        start = startDate or end - dt.timedelta(days=7)
        if start > end:
            raise HTTPException(422, [{"loc": ["query", "startDate"], "msg": "startDate is after endDate"}])
        return {_camel(k): v for k, v in service.stats(start, end).items()}

    @app.get(f"{PREFIX}/dead-letter-queue", tags=["dead-letter queue"])
    def dead_letter_queue(
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        pageSize: Annotated[int, Query(ge=1, le=500)] = 50,
        market: Annotated[
            str | None, Query(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$", description="e.g. BIST, or ALL")
        ] = None,
        state: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    ) -> dict[str, Any]:
        """A page of failed work items."""
        return service.dlq_list(page, pageSize, market, state)

    @app.get(f"{PREFIX}/dead-letter-queue/{{itemId}}", tags=["dead-letter queue"])
    def dead_letter_item(itemId: ItemId) -> dict[str, Any]:
        """One failed work item in full."""
        return service.dlq_show(itemId)

    @app.post(f"{PREFIX}/dead-letter-queue/{{itemId}}/replay", status_code=202, dependencies=mutating)
    def replay_item(itemId: ItemId) -> dict[str, Any]:
        """Re-execute only the item's failed partitions."""
        return service.dlq_replay(itemId)

    @app.post(f"{PREFIX}/dead-letter-queue/{{itemId}}/discard", dependencies=mutating, tags=["dead-letter queue"])
    def discard_item(itemId: ItemId, body: DiscardBody) -> dict[str, Any]:
        """Drop the item, recording who and why."""
        return service.dlq_discard(itemId, body.reason, body.discardedBy)

    @app.get(f"{PREFIX}/health", tags=["monitoring"])
    def health() -> JSONResponse:
        """Healthy, degraded or unhealthy, with reasons (HTTP 503 when unhealthy)."""
        report = service.health()
        unhealthy = str(report.get("status", "")).lower() == "unhealthy"
        return JSONResponse(status_code=503 if unhealthy else 200, content=report)

    @app.post(f"{PREFIX}/schedules/all-markets", status_code=201, dependencies=mutating, tags=["schedules"])
    def add_schedule(body: ScheduleBody) -> dict[str, Any]:
        """Run the all-markets import on a cron schedule in a time zone."""
        return service.add_schedule(body.importRequest.to_request(), body.cronExpression, body.timeZone).as_api()

    @app.get(f"{PREFIX}/schedules", tags=["schedules"])
    def list_schedules() -> list[dict[str, Any]]:
        """Every recurring import added through the API or the CLI."""
        return [s.as_api() for s in service.list_schedules()]

    @app.delete(f"{PREFIX}/schedules/{{recurringJobId}}", status_code=204, dependencies=mutating, tags=["schedules"])
    def remove_schedule(recurringJobId: ScheduleId) -> Response:
        """Remove a recurring import."""
        service.remove_schedule(recurringJobId)
        return Response(status_code=204)

    return app
