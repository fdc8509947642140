"""The retry schedule (1, 2, 4 ... minutes, capped at 30, jittered) and the retry-or-give-up decision per class."""

import pytest

from mytrader_pipeline.core.errors import Classified, ErrorClass, classify
from mytrader_pipeline.core.retry import BackoffSchedule, decide
from mytrader_pipeline.markets import load_markets


def test_the_shipped_policy_is_three_retries_from_one_minute_doubling_capped_at_thirty() -> None:
    schedule = BackoffSchedule.for_market(load_markets().get("BIST"))
    assert (schedule.max_retries, schedule.attempts) == (3, 4)
    assert [schedule.nominal_delay(n) for n in range(1, 8)] == [60, 120, 240, 480, 960, 1800, 1800]


@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_jitter_spreads_each_delay_but_never_past_the_cap(rand: float) -> None:
    schedule = BackoffSchedule(max_retries=10, base_seconds=60, cap_seconds=1800, jitter=0.1)
    assert 54 <= schedule.delay(1, lambda: rand) <= 66
    assert 1620 <= schedule.delay(9, lambda: rand) <= 1800


@pytest.mark.parametrize("error_class", list(ErrorClass))
def test_only_retryable_classes_are_retried_and_never_beyond_the_limit(error_class: ErrorClass) -> None:
    schedule = BackoffSchedule(max_retries=2, base_seconds=1, cap_seconds=4, jitter=0)
    error = Classified(error_class, "why")
    first = decide([error], 0, schedule)
    assert first.retry is error_class.retryable
    assert first.log_line.startswith(f"attempt 1 of 3: {error_class.value}: why")
    assert decide([error], 2, schedule).retry is False  # the third attempt was the last


def test_a_mix_retries_when_any_failure_is_retryable() -> None:
    schedule = BackoffSchedule(max_retries=1, base_seconds=1, cap_seconds=1, jitter=0)
    errors = [Classified(ErrorClass.FILE_MISSING, "gone"), Classified(ErrorClass.DATABASE_CONFLICT, "deadlock")]
    assert decide(errors, 0, schedule).retry


def test_permission_errors_are_access_denied() -> None:  # running as root, the DLQ test cannot chmod a file away
    assert classify(PermissionError("denied")).error_class is ErrorClass.ACCESS_DENIED


def test_a_wrong_database_is_never_retried_even_beside_a_retryable_failure() -> None:
    schedule = BackoffSchedule(max_retries=3, base_seconds=1, cap_seconds=1, jitter=0)
    wrong_db = Classified(ErrorClass.DATABASE_CONFIG, 'database "x" does not exist')
    assert not decide([wrong_db], 0, schedule).retry
    decision = decide([wrong_db, Classified(ErrorClass.DATABASE_CONNECTION, "lost")], 0, schedule)
    assert not decision.retry
    assert decision.log_line.endswith("giving up")
