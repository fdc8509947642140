"""Retry schedules: exponential backoff (1, 2, 4 ... minutes, capped, with jitter) and the retry-or-give-up decision."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from mytrader_pipeline.core.errors import Classified, ErrorClass
from mytrader_pipeline.markets import Market


@dataclasses.dataclass(frozen=True)
class BackoffSchedule:
    """Up to ``max_retries`` retries; retry n waits ``base * 2**(n-1)`` seconds, at most ``cap``, +/- ``jitter``."""

    max_retries: int = 3
    base_seconds: float = 60.0
    cap_seconds: float = 1800.0
    jitter: float = 0.1  # fraction of the delay, spread both ways

    @classmethod
    def for_market(cls, market: Market) -> BackoffSchedule:
        """The schedule configured for ``market`` in the registry."""
        return cls(market.max_retries, market.retry_delay_seconds, market.retry_max_delay_seconds, market.retry_jitter)

    @property
    def attempts(self) -> int:
        """Total attempts: the first one and every retry."""
        return self.max_retries + 1

    def nominal_delay(self, retry_number: int) -> float:
        """Seconds before retry ``retry_number`` (1-based) without jitter: doubling from the base, capped."""
        if retry_number < 1:
            raise ValueError("retry numbers start at 1")
        return min(self.base_seconds * 2 ** min(retry_number - 1, 60), self.cap_seconds)

    def delay(self, retry_number: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before retry ``retry_number`` with jitter; never negative and never above the cap."""
        nominal = self.nominal_delay(retry_number)
        spread = nominal * self.jitter * (2 * rand() - 1)
        return max(0.0, min(nominal + spread, self.cap_seconds))


@dataclasses.dataclass(frozen=True)
class RetryDecision:
    """What to do after attempt ``attempt`` (1-based) of ``attempts`` failed."""

    retry: bool
    attempt: int
    attempts: int
    reason: str
    delay_seconds: float = 0.0

    @property
    def log_line(self) -> str:
        """``attempt N of M: reason`` plus what happens next."""
        then = f"retrying in {self.delay_seconds:.1f}s" if self.retry else "giving up"
        return f"attempt {self.attempt} of {self.attempts}: {self.reason}; {then}"


def decide(
    errors: Sequence[Classified],
    retry_number: int,
    schedule: BackoffSchedule,
    rand: Callable[[], float] = random.random,
) -> RetryDecision:
    """Retry when any error is retryable and retries remain; ``retry_number`` is 0 on the first attempt.

    Non-retryable errors never cause a retry on their own: they need a person (the dead-letter queue); a
    ``database_config`` error prevents any retry, since every attempt would meet it.
    """
    attempt = retry_number + 1
    retryable = [e for e in errors if e.retryable]
    shown = retryable or list(errors)
    reason = "; ".join(str(e) for e in shown[:3]) or "failed"
    if len(shown) > 3:
        reason += f" (+{len(shown) - 3} more)"
    if not retryable:
        return RetryDecision(False, attempt, schedule.attempts, f"{reason} (not retryable)")
    if any(e.error_class is ErrorClass.DATABASE_CONFIG for e in errors):
        # A wrong database URL fails every file alike until a person fixes it, whatever else went wrong too.
        return RetryDecision(False, attempt, schedule.attempts, f"{reason} (database_config: not retryable)")
    if retry_number >= schedule.max_retries:
        return RetryDecision(False, attempt, schedule.attempts, f"{reason} (retries exhausted)")
    return RetryDecision(True, attempt, schedule.attempts, reason, schedule.delay(attempt, rand))
