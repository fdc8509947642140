"""errors.classify: every failure a load can meet gets its class, and only database trouble is retryable."""

import psycopg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.errors import (
    Classified,
    DataPathError,
    ErrorClass,
    FileFormatError,
    IngestError,
    classify,
)


class _StateError(Exception):
    """An exception carrying a SQLSTATE, as psycopg 3 (``sqlstate``) or psycopg2 (``pgcode``) raise them."""

    def __init__(self, message: str, sqlstate: str | None = None, pgcode: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.pgcode = pgcode


def _wrapped(orig: Exception) -> sa.exc.DBAPIError:
    """How SQLAlchemy hands a driver error over: its own class for the driver's, the driver's exception as ``.orig``."""
    return sa.exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)


def _caused_by(cause: BaseException) -> RuntimeError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("load failed") from exc
    except RuntimeError as outer:
        return outer


class PanicException(BaseException):  # pyo3 creates its own type only at a first panic
    """What pyo3 raises when Rust code (polars) panics: a ``BaseException``, named so."""


def _panic() -> BaseException:
    return PanicException("assertion failed: i < self.len()")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (FileNotFoundError(2, "No such file or directory", "/data/BIST/X.csv"), ErrorClass.FILE_MISSING),
        (PermissionError(13, "Permission denied", "/data/BIST/X.csv"), ErrorClass.ACCESS_DENIED),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ErrorClass.UNDECODABLE),
        (_StateError("deadlock detected", sqlstate="40P01"), ErrorClass.DATABASE_CONFLICT),
        (_StateError("could not serialize access", sqlstate="40001"), ErrorClass.DATABASE_CONFLICT),
        (_StateError("canceling statement due to statement timeout", sqlstate="57014"), ErrorClass.DATABASE_TIMEOUT),
        (_StateError("could not obtain lock", sqlstate="55P03"), ErrorClass.DATABASE_TIMEOUT),
        (_StateError("connection failure", sqlstate="08006"), ErrorClass.DATABASE_CONNECTION),
        (_StateError("terminating connection", sqlstate="57P01"), ErrorClass.DATABASE_CONNECTION),
        (_StateError("deadlock detected", pgcode="40P01"), ErrorClass.DATABASE_CONFLICT),
        (_wrapped(_StateError("deadlock detected", sqlstate="40P01")), ErrorClass.DATABASE_CONFLICT),
        (_wrapped(_StateError("timeout", sqlstate="57014")), ErrorClass.DATABASE_TIMEOUT),
        (_caused_by(_StateError("serialization", sqlstate="40001")), ErrorClass.DATABASE_CONFLICT),
        (psycopg.errors.DeadlockDetected("deadlock detected"), ErrorClass.DATABASE_CONFLICT),
        (psycopg.errors.SerializationFailure("could not serialize"), ErrorClass.DATABASE_CONFLICT),
        (psycopg.errors.QueryCanceled("statement timeout"), ErrorClass.DATABASE_TIMEOUT),
        (psycopg.errors.AdminShutdown("terminating connection"), ErrorClass.DATABASE_CONNECTION),
        (psycopg.OperationalError("server closed the connection unexpectedly"), ErrorClass.DATABASE_CONNECTION),
        (psycopg.InterfaceError("connection already closed"), ErrorClass.DATABASE_CONNECTION),
        (_wrapped(psycopg.OperationalError("connection refused")), ErrorClass.DATABASE_CONNECTION),
        (TimeoutError("timed out"), ErrorClass.DATABASE_TIMEOUT),
        (ValueError("something odd"), ErrorClass.UNEXPECTED),
        (_StateError("unique violation", sqlstate="23505"), ErrorClass.REJECTED_BY_DATABASE),
        (psycopg.errors.StringDataRightTruncation("value too long"), ErrorClass.REJECTED_BY_DATABASE),
        (_wrapped(psycopg.errors.NumericValueOutOfRange("out of range")), ErrorClass.REJECTED_BY_DATABASE),
        (psycopg.errors.InvalidCatalogName('database "nope" does not exist'), ErrorClass.DATABASE_CONFIG),
        (psycopg.errors.InvalidPassword("password authentication failed"), ErrorClass.DATABASE_CONFIG),
        (psycopg.OperationalError('could not translate host name "nohost" to address'), ErrorClass.DATABASE_CONFIG),
        (_StateError("other", sqlstate="42P01"), ErrorClass.UNEXPECTED),
        (_panic(), ErrorClass.LIBRARY_PANIC),
    ],
    ids=[
        "file-not-found",
        "permission",
        "unicode",
        "deadlock",
        "serialization",
        "statement-timeout",
        "lock-timeout",
        "connection-failure",
        "admin-shutdown-state",
        "psycopg2-pgcode",
        "sqlalchemy-wrapped-deadlock",
        "sqlalchemy-wrapped-timeout",
        "cause-chain",
        "psycopg-deadlock",
        "psycopg-serialization",
        "psycopg-query-canceled",
        "psycopg-admin-shutdown",
        "psycopg-operational",
        "psycopg-interface",
        "sqlalchemy-wrapped-operational",
        "timeout-error",
        "unexpected",
        "unique-violation",
        "value-too-long",
        "numeric-out-of-range",
        "database-missing",
        "bad-password",
        "unknown-host",
        "other-sqlstate",
        "polars-panic",
    ],
)
def test_classify(exc: BaseException, expected: ErrorClass) -> None:
    classified = classify(exc)
    assert classified.error_class is expected
    assert classified.retryable is expected.retryable
    assert classified.message


def test_a_refused_connection_is_a_retryable_connection_error() -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/postgres", connect_timeout=2)
    classified = classify(info.value)
    assert classified.error_class is ErrorClass.DATABASE_CONNECTION
    assert classified.retryable


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_a_configuration_error_not_retried() -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/mytrader_no_such_database", connect_timeout=5)
    classified = classify(info.value)
    assert classified.error_class is ErrorClass.DATABASE_CONFIG
    assert not classified.retryable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (IngestError("NYSE/A.csv", "odd"), ErrorClass.UNEXPECTED),
        (FileFormatError("NYSE/A.csv", "unknown header", line=1), ErrorClass.UNKNOWN_FORMAT),
        (FileFormatError("NYSE/A.csv", "empty", error_class=ErrorClass.EMPTY_FILE), ErrorClass.EMPTY_FILE),
        (FileFormatError("NYSE/A.csv", "bytes", error_class=ErrorClass.UNDECODABLE), ErrorClass.UNDECODABLE),
        (FileFormatError("NYSE/A.csv", "dates", error_class=ErrorClass.AMBIGUOUS_DATES), ErrorClass.AMBIGUOUS_DATES),
        (IngestError("NYSE/A.csv", "all bad", error_class=ErrorClass.ALL_ROWS_REJECTED), ErrorClass.ALL_ROWS_REJECTED),
        (DataPathError("NYSE/A.csv", "missing"), ErrorClass.FILE_MISSING),
        (DataPathError("NYSE/A.csv", "denied", error_class=ErrorClass.ACCESS_DENIED), ErrorClass.ACCESS_DENIED),
        (DataPathError("../x", "outside", error_class=ErrorClass.OUTSIDE_DATA_ROOT), ErrorClass.OUTSIDE_DATA_ROOT),
    ],
    ids=lambda value: value.value if isinstance(value, ErrorClass) else type(value).__name__,
)
def test_ingest_errors_keep_their_class(exc: IngestError, expected: ErrorClass) -> None:
    assert classify(exc).error_class is expected
    assert exc.retryable is expected.retryable


def test_only_database_trouble_a_run_over_its_max_runtime_and_unexpected_failures_are_retryable() -> None:
    retryable = {c for c in ErrorClass if c.retryable}
    assert retryable == {
        ErrorClass.DATABASE_CONNECTION,
        ErrorClass.DATABASE_TIMEOUT,
        ErrorClass.DATABASE_CONFLICT,
        ErrorClass.FILE_CHANGED,
        ErrorClass.MAX_RUNTIME_EXCEEDED,
        ErrorClass.UNEXPECTED,
    }


def test_the_message_names_file_line_and_column() -> None:
    error = FileFormatError("BIST/X.csv", "dates are ambiguous", line=3, column="Tarih")
    assert str(error) == "BIST/X.csv:3 column Tarih: dates are ambiguous"
    assert classify(error) == Classified(ErrorClass.UNKNOWN_FORMAT, "BIST/X.csv:3 column Tarih: dates are ambiguous")


def test_the_message_is_the_first_line_or_the_type_name() -> None:
    assert classify(ValueError("first line\nsecond line")).message == "first line"
    assert classify(KeyError()).message == "KeyError"


@pytest.mark.parametrize("state", ["22P02", "22003", "23P01", "23502", "2200D"])
def test_any_sqlstate_of_class_22_or_23_is_rejected_by_the_database(state: str) -> None:
    # psycopg maps every data_exception to DataError and every integrity violation to IntegrityError, whichever
    # driver reported the SQLSTATE.
    assert classify(_StateError("refused", sqlstate=state)).error_class is ErrorClass.REJECTED_BY_DATABASE
    assert classify(_StateError("refused", pgcode=state)).error_class is ErrorClass.REJECTED_BY_DATABASE
