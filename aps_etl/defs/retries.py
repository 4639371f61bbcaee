"""The retry policy of the steps that talk to services (extract, load)."""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.definitions.policy import calculate_delay

DELAY_VARIABLE = "APS_RETRY_DELAY_S"
DEFAULT_DELAY_S = 5.0


def retry_delay_s() -> float:
    """The first retry's delay: $APS_RETRY_DELAY_S seconds (default 5; Dagster's exponential
    backoff then waits 3 and 7 times as long)."""
    raw = os.environ.get(DELAY_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_DELAY_S
    try:
        delay = float(raw)
    except ValueError:
        delay = -1.0
    if not delay >= 0:  # also refuses NaN
        raise ValueError(f"{DELAY_VARIABLE}={raw!r}: give the first retry's delay in seconds")
    return delay


class TransientRetry(dg.RetryPolicy):
    """Dagster's RetryPolicy whose first delay is read when a retry is scheduled, so the
    variable is a setting of the process that runs the step, not of whoever imported the
    definitions first."""

    __slots__ = ()

    def calculate_delay(self, attempt_num: int) -> float:
        return calculate_delay(
            attempt_num=attempt_num,
            backoff=self.backoff,
            jitter=self.jitter,
            base_delay=retry_delay_s(),
        )


# Transient failures (a database restart, an S3 hiccup, Trino busy) are retried with
# backoff; validation failures raise dg.Failure(allow_retries=False) and are not.
TRANSIENT_RETRY = TransientRetry(
    max_retries=3, delay=DEFAULT_DELAY_S, backoff=dg.Backoff.EXPONENTIAL
)
