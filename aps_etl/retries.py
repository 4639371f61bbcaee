"""The retry policy of the steps that talk to services (extract, load)."""

from __future__ import annotations

import os

import dagster as dg

# Transient failures (a database restart, an S3 hiccup, Trino busy) are retried with
# backoff; validation failures raise dg.Failure(allow_retries=False) and are not.
# APS_RETRY_DELAY_S sets the first delay (seconds; default 5, then 10, 20).
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=3,
    delay=float(os.environ.get("APS_RETRY_DELAY_S", "5")),
    backoff=dg.Backoff.EXPONENTIAL,
)
