"""Ingest errors and the one place that classifies any exception as retryable or needing a person."""

from __future__ import annotations

import dataclasses
import enum
import re

import psycopg


class ErrorClass(enum.Enum):
    """Why a load failed; the value is what the audit, logs and dead-letter queue record."""

    FILE_MISSING = "file_missing"
    ACCESS_DENIED = "access_denied"
    UNKNOWN_FORMAT = "unknown_format"
    UNDECODABLE = "undecodable"
    EMPTY_FILE = "empty_file"
    ALL_ROWS_REJECTED = "all_rows_rejected"
    AMBIGUOUS_DATES = "ambiguous_dates"
    OUTSIDE_DATA_ROOT = "outside_data_root"
    NOT_A_FILE = "not_a_file"  # an entry of a market folder that is a directory, socket, fifo or dangling link
    INVALID_FILE_NAME = "invalid_file_name"  # a name a partition key cannot hold (a comma, brackets, a slash ...)
    FILE_CHANGED = "file_changed"  # the file was rewritten while it was being read; the next attempt reads it whole
    REJECTED_BY_DATABASE = "rejected_by_database"  # the database refused the data itself (SQLSTATE class 22 or 23)
    LIBRARY_PANIC = "library_panic"  # a native library (polars) panicked on this file: a bug, not the data's fault
    DATABASE_CONFIG = "database_config"  # the database does not exist, credentials are wrong, the host is unknown
    DATABASE_CONNECTION = "database_connection"
    DATABASE_TIMEOUT = "database_timeout"
    DATABASE_CONFLICT = "database_conflict"  # deadlock or serialization failure
    MAX_RUNTIME_EXCEEDED = "max_runtime_exceeded"  # the run ran past its max runtime and run monitoring stopped it
    UNEXPECTED = "unexpected"

    @property
    def retryable(self) -> bool:
        """Whether trying again without a person's help can succeed."""
        return self in _RETRYABLE


# A run over its max runtime is retryable: nothing is wrong with its data (a bad file fails fast, with its own class),
# so it was stuck on something that passes (a lock wait, a stalled connection or disk); and a retry resumes rather
# than restarts, since files committed before the stop are unchanged and skipped.
_RETRYABLE = frozenset(
    {
        ErrorClass.DATABASE_CONNECTION,
        ErrorClass.DATABASE_TIMEOUT,
        ErrorClass.DATABASE_CONFLICT,
        ErrorClass.FILE_CHANGED,
        ErrorClass.MAX_RUNTIME_EXCEEDED,
        ErrorClass.UNEXPECTED,
    }
)


class IngestError(Exception):
    """A failure to load one file, with the file and, where known, the line and column at fault."""

    error_class: ErrorClass = ErrorClass.UNEXPECTED

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        line: int | None = None,
        column: str | None = None,
        error_class: ErrorClass | None = None,
    ) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        self.column = column
        if error_class is not None:
            self.error_class = error_class
        where = path if line is None else f"{path}:{line}"
        if column:
            where += f" column {column}"
        super().__init__(f"{where}: {reason}")

    @property
    def retryable(self) -> bool:
        """Whether trying again without a person's help can succeed."""
        return self.error_class.retryable


class FileFormatError(IngestError):
    """The file as a whole cannot be read: unknown header, undecodable, empty, ambiguous dates."""

    error_class = ErrorClass.UNKNOWN_FORMAT


class DataPathError(IngestError):
    """A path that is missing, unreadable, or outside the configured data root."""

    error_class = ErrorClass.FILE_MISSING


@dataclasses.dataclass(frozen=True)
class Classified:
    """An exception's class and a one-line message fit for an operator; ``str()`` is ``class: message``."""

    error_class: ErrorClass
    message: str

    @property
    def retryable(self) -> bool:
        """Whether trying again without a person's help can succeed."""
        return self.error_class.retryable

    def __str__(self) -> str:
        return f"{self.error_class.value}: {self.message}"


@dataclasses.dataclass(frozen=True)
class FileFailure:
    """Why one file was not loaded, as data: its error class and message.

    ``error_class`` is None when the file failed without an error of its own (cancelled, or never tried). ``str()``
    is the text the dead-letter queue stores and operators read: ``class: message``, or the message alone.
    """

    error_class: ErrorClass | None
    message: str

    @classmethod
    def of(cls, error: Classified) -> FileFailure:
        """The failure of a file whose load raised ``error``."""
        return cls(error.error_class, error.message)

    def __str__(self) -> str:
        return f"{self.error_class.value}: {self.message}" if self.error_class else self.message

    def as_json(self) -> dict[str, str | None]:
        """The failure as JSON (Dagster step metadata): ``{"error_class": ..., "message": ...}``."""
        return {"error_class": self.error_class.value if self.error_class else None, "message": self.message}

    @classmethod
    def from_json(cls, value: object) -> FileFailure:
        """Inverse of ``as_json``; anything else (a run's text from before failures were data) is a bare message."""
        if not isinstance(value, dict):
            return cls(None, str(value))
        known = {c.value for c in ErrorClass}
        found = value.get("error_class")
        return cls(ErrorClass(found) if found in known else None, str(value.get("message") or ""))


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if state:
            return str(state)
    return None


def _postgres_error(state: str | None) -> type[psycopg.Error] | None:
    """psycopg's exception class for a SQLSTATE, whichever driver raised it (psycopg 3, or psycopg2's ``pgcode``)."""
    if state is None:
        return None
    try:
        return psycopg.errors.lookup(state)
    except KeyError:
        return None


# What a database error means for the load, by psycopg's class of its SQLSTATE (first match wins).
_DATABASE_ERRORS: tuple[tuple[tuple[type[psycopg.Error], ...], ErrorClass], ...] = (
    # The connection settings are wrong, not the server away: retrying cannot help.
    (
        (
            psycopg.errors.InvalidCatalogName,
            psycopg.errors.InvalidAuthorizationSpecification,
            psycopg.errors.InvalidPassword,
        ),
        ErrorClass.DATABASE_CONFIG,
    ),
    # The database refused the data itself: SQLSTATE classes 22 (data_exception), 23 (integrity_constraint_violation).
    ((psycopg.DataError, psycopg.IntegrityError), ErrorClass.REJECTED_BY_DATABASE),
    ((psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected), ErrorClass.DATABASE_CONFLICT),
    ((psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable), ErrorClass.DATABASE_TIMEOUT),  # timeouts
    # The server went away (class 08, connection_exception, is checked by its code: psycopg gives it no common base).
    (
        (psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown, psycopg.errors.CannotConnectNow),
        ErrorClass.DATABASE_CONNECTION,
    ),
)
# libpq's words for the same when it refuses at connect time, where drivers give no SQLSTATE, and for a host name
# that does not resolve.
_CONFIG_WORDS = re.compile(
    r'FATAL:\s+(database|role) ".*" does not exist|password authentication failed|no pg_hba\.conf entry'
    r"|could not translate host name|name or service not known|nodename nor servname",
    re.IGNORECASE,
)


def is_library_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a native panic (pyo3's ``PanicException``, a ``BaseException``) rather than an error."""
    return type(exc).__name__ == "PanicException"


def classify(exc: BaseException) -> Classified:
    """Classify any exception raised while loading a file."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, IngestError):
        return Classified(exc.error_class, message)
    if is_library_panic(exc):
        return Classified(ErrorClass.LIBRARY_PANIC, f"polars panicked: {message}")
    if isinstance(exc, FileNotFoundError):
        return Classified(ErrorClass.FILE_MISSING, message)
    if isinstance(exc, PermissionError):
        return Classified(ErrorClass.ACCESS_DENIED, message)
    if isinstance(exc, UnicodeDecodeError):
        return Classified(ErrorClass.UNDECODABLE, message)
    state = _sqlstate(exc)
    if _CONFIG_WORDS.search(str(exc)):
        return Classified(ErrorClass.DATABASE_CONFIG, message)
    error = _postgres_error(state)
    found = next((c for errors, c in _DATABASE_ERRORS if error is not None and issubclass(error, errors)), None)
    if found is not None:
        return Classified(found, message)
    if (state or "").startswith("08"):
        return Classified(ErrorClass.DATABASE_CONNECTION, message)
    if isinstance(exc, TimeoutError):
        return Classified(ErrorClass.DATABASE_TIMEOUT, message)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"OperationalError", "InterfaceError", "ConnectionError", "DisconnectionError"}:
        return Classified(ErrorClass.DATABASE_CONNECTION, message)
    return Classified(ErrorClass.UNEXPECTED, message)
