"""A file's failure travels as data (class and message); its text is what operators always read."""

import pytest

from mytrader_pipeline.core.errors import Classified, ErrorClass, FileFailure, IngestError, classify


def test_the_text_of_a_failure_is_class_colon_message_or_the_message_alone() -> None:
    assert str(FileFailure(ErrorClass.UNKNOWN_FORMAT, "NASDAQ/BAD.csv: no header")) == (
        "unknown_format: NASDAQ/BAD.csv: no header"
    )
    assert str(FileFailure(None, "cancelled")) == "cancelled"
    assert str(Classified(ErrorClass.DATABASE_TIMEOUT, "statement timeout")) == "database_timeout: statement timeout"


def test_a_classified_error_becomes_a_failure_with_the_same_class_and_text() -> None:
    error = classify(IngestError("NYSE/X.csv", "empty", line=3, error_class=ErrorClass.EMPTY_FILE))
    failure = FileFailure.of(error)
    assert (failure.error_class, failure.message) == (ErrorClass.EMPTY_FILE, "NYSE/X.csv:3: empty")
    assert str(failure) == str(error)


@pytest.mark.parametrize(
    "failure",
    [
        FileFailure(ErrorClass.UNKNOWN_FORMAT, "a: b: c"),  # colons in the message stay in the message
        FileFailure(None, "not loaded: its op did not finish"),
        FileFailure(ErrorClass.DATABASE_CONNECTION, ""),
    ],
)
def test_json_round_trip_keeps_class_and_message_apart(failure: FileFailure) -> None:
    assert FileFailure.from_json(failure.as_json()) == failure


def test_old_text_or_an_unknown_class_is_a_bare_message_never_split() -> None:
    assert FileFailure.from_json("unknown_format: x") == FileFailure(None, "unknown_format: x")
    assert FileFailure.from_json({"error_class": "no_such_class", "message": "m"}) == FileFailure(None, "m")
