"""Whether a failure is the infrastructure's (worth running again) or the data's (fails the
same way twice), from its exception chain: a live exception (a failure hook) or one Dagster
stored (a failed run's events keep each class's name only, no module).

- transient: a connection dropped, refused or timed out (PostgreSQL, S3, Trino, the
  network), readers holding a table past the swap's budget, a step's retries run out on a
  fault its own code called transient (`dg.Failure` allowing retries);
- permanent: the project's refusals (validation, completeness guards, a drifted schema,
  a stale load, a setting), `dg.Failure(allow_retries=False)`, a statement's own error;
- unknown: anything else (a bug): not retried, as a permanent one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

Kind = Literal["transient", "permanent", "unknown"]

# Run tag: the verdict on a run's step failures so far (the worst of them), for the
# operator, the CLI's re-execution and the alerts.
FAILURE_KIND_TAG = "aps_etl/failure_kind"

TRANSIENT = frozenset(
    {
        # PostgreSQL: psycopg2 / psycopg / ADBC / SQLAlchemy / dagster-postgres
        "OperationalError",
        "InterfaceError",
        "DagsterPostgresException",
        # the socket
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "TimeoutError",
        "IncompleteRead",
        # S3 (botocore, aiobotocore), HTTP (urllib3, requests, aiohttp)
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ProtocolError",
        "NewConnectionError",
        "MaxRetryError",
        "ChunkedEncodingError",
        "ReadTimeout",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        # Trino's client
        "TrinoConnectionError",
        "Http502Error",
        "Http503Error",
        "Http504Error",
        # readers held the tables for the swap's whole budget; the merge's basis moved
        "SwapBlocked",
        "MergeBasisChanged",
    }
)
PERMANENT = frozenset(
    {
        "ValidationError",
        "PermanentLoadError",
        "TargetSchemaMismatch",
        "RowCountMismatch",
        "StaleLoad",
        "SnapshotRefused",
        "IncompleteExtract",
        "SourceRulesViolated",
        "ReconciliationError",
        "PlanRunChanged",
        "SchemaDriftError",
        "ImmutablePartitionError",
        "SnapshotConflict",
        "RowCountError",
        "OlderInputsError",
        "ConfigurationError",
        "PartitionKeyError",
        "BackfillPolicyError",
        "UnknownEngine",
        "DriverMissing",
        "RunLockHeld",
        "RunTooLong",
        "DagsterTypeCheckDidNotPass",
        "DagsterInvariantViolationError",
        "ProgrammingError",
        "IntegrityError",
        "DataError",
    }
)
_SEVERITY: dict[Kind, int] = {"transient": 0, "unknown": 1, "permanent": 2}


def _chain(error: Any) -> Iterator[Any]:
    """An error and its causes: a live exception (__cause__/__context__) or Dagster's
    SerializableErrorInfo (cause/context)."""
    seen = 0
    while error is not None and seen < 25:
        yield error
        seen += 1
        if isinstance(error, BaseException):
            error = error.__cause__ or error.__context__
        else:
            error = getattr(error, "cause", None) or getattr(error, "context", None)


def _names(error: Any) -> set[str]:
    if isinstance(error, BaseException):  # a subclass counts as its bases
        return {cls.__name__ for cls in type(error).__mro__}
    return {str(getattr(error, "cls_name", "") or "")}


def kind_of(error: Any) -> Kind:
    """The kind of one failure's exception chain."""
    names: set[str] = set()
    for link in _chain(error):
        if isinstance(link, BaseException):
            if getattr(link, "allow_retries", True) is False:  # dg.Failure(allow_retries=False)
                return "permanent"
            if getattr(link, "permanent", False):  # TrinoError(permanent=True)
                return "permanent"
            transient = getattr(link, "transient", None)  # the project's DatabaseError
            if transient is not None:
                return "transient" if transient else "permanent"
            if type(link).__name__ == "Failure":  # a Failure allowing retries ran out of them
                names.add("TransientFailure")
        names |= _names(link)
    if names & PERMANENT:
        return "permanent"
    if names & (TRANSIENT | {"TransientFailure"}):
        return "transient"
    return "unknown"


def worst(*kinds: Kind | str | None) -> Kind:
    """The verdict on several failures: transient only if every one is."""
    known: list[Kind] = [k for k in kinds if k in _SEVERITY]  # type: ignore[misc]
    return max(known, key=_SEVERITY.__getitem__) if known else "unknown"
