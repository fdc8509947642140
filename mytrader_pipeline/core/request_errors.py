"""Refused requests, each mapped by the CLI to an exit code and by the REST API to an HTTP status."""

from __future__ import annotations


class RequestError(Exception):
    """A request could not be carried out; ``status`` is the HTTP status the REST API answers with."""

    status: int = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InvalidRequest(RequestError):
    """The request names something invalid (unknown market, bad cron, a path outside the data root)."""

    status = 400


class UnknownMarket(InvalidRequest):
    """A market the registry does not hold, named in a URL's path: 404 for the REST API, still exit 2 for the CLI."""

    status = 404


class NotFound(RequestError):
    """No run, schedule or dead-letter item with that id."""

    status = 404


class Conflict(RequestError):
    """The operation does not apply in the object's current state (cancel a finished run, retry a success)."""

    status = 409


class DeploymentUnavailable(RequestError):
    """The Dagster deployment (its web server's GraphQL API) or the warehouse cannot be reached."""

    status = 503
