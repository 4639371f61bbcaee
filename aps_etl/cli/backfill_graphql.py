"""`aps-etl backfill --policy ... --url URL` (or APS_DAGSTER_URL): the range submitted to a
running Dagster webserver through its GraphQL API, as its UI's "Materialize..." does
(`launchPartitionBackfill` with the daily job's assets and the days), and followed there
(`partitionBackfillOrError`: the backfill and its runs). The webserver's deployment runs it;
this process needs no access to its instance, only to the URL.

A webserver behind an authenticating front (the compose deployment's UI: HTTPS with the
deployment's own CA, HTTP basic authentication) is reached with `APS_DAGSTER_USER` /
`APS_DAGSTER_PASSWORD` and `APS_DAGSTER_SSLROOTCERT` (the CA file) from the environment:
never in the URL, which the command prints."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import dagster as dg

from aps_etl.cli.backfill_runs import (
    FINISHED,
    BackfillError,
    RunProgress,
    Snapshot,
    daily_partitions,
    run_days,
)
from aps_etl.lib.tags import LAUNCHED_BY_TAG

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""

IN_FLIGHT = """
query InFlight($filters: BulkActionsFilter) {
  partitionBackfillsOrError(filters: $filters) {
    __typename
    ... on PartitionBackfills { results { id status partitionNames } }
    ... on Error { message }
  }
}"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      runs {
        runId status startTime endTime
        tags { key value }
        stepStats { stepKey status }
      }
    }
    ... on Error { message }
  }
}"""

CANCEL = """
mutation Cancel($id: String!) {
  cancelPartitionBackfill(backfillId: $id) {
    __typename
    ... on Error { message }
  }
}"""


def _front() -> tuple[dict[str, str], ssl.SSLContext | None]:
    """The Authorization header and the TLS context an authenticating front asks for."""
    headers = {}
    password = os.environ.get("APS_DAGSTER_PASSWORD")
    if password:
        user = os.environ.get("APS_DAGSTER_USER") or "admin"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    cafile = os.environ.get("APS_DAGSTER_SSLROOTCERT")
    return headers, ssl.create_default_context(cafile=cafile) if cafile else None


def call(url: str, query: str, variables: dict[str, Any], timeout_s: float = 60) -> dict:
    """One GraphQL request to the webserver at `url`: its data, or BackfillError."""
    headers, context = _front()
    request = urllib.request.Request(
        url.rstrip("/") + "/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        hint = " (set APS_DAGSTER_USER and APS_DAGSTER_PASSWORD)" if exc.code == 401 else ""
        raise BackfillError(f"the Dagster webserver at {url}: HTTP {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BackfillError(f"the Dagster webserver at {url}: {exc}") from None
    if body.get("errors"):
        raise BackfillError(f"the Dagster webserver at {url}: {body['errors'][0]['message']}")
    return body["data"]


def _result(data: dict, field: str, url: str) -> dict:
    found = data[field]
    if "message" in found:
        raise BackfillError(f"the Dagster webserver at {url}: {found['message'].strip()}")
    return found


def submit(url: str, defs: dg.Definitions, first: str, last: str, title: str) -> str:
    """The daily job's assets for [first, last] as one asset backfill of the webserver's
    deployment: its id. A range overlapping one of its backfills in flight is refused."""
    from aps_etl.defs.jobs import aps_daily

    days = daily_partitions(first, last)
    clash = in_flight_overlap(url, set(days))
    if clash:
        raise BackfillError(clash)
    keys = sorted(aps_daily.selection.resolve(defs.resolve_asset_graph()))
    params = {
        "assetSelection": [{"path": key.path} for key in keys],
        "partitionNames": days,
        "tags": [{"key": LAUNCHED_BY_TAG, "value": "aps-etl backfill"}],
        "title": title,
        "description": f"aps-etl backfill --from {first} --to {last}",
    }
    found = _result(call(url, LAUNCH, {"params": params}), "launchPartitionBackfill", url)
    return str(found["backfillId"])


def in_flight_overlap(url: str, days: set[str]) -> str | None:
    """A backfill in flight on the webserver's deployment that targets one of `days`, as
    backfill_runs.in_flight_overlap tells it on an instance."""
    statuses = ["REQUESTED", "CANCELING", "FAILING"]
    data = call(url, IN_FLIGHT, {"filters": {"statuses": statuses}})
    for backfill in _result(data, "partitionBackfillsOrError", url)["results"]:
        both = sorted(days & set(backfill.get("partitionNames") or []))
        if both:
            return (
                f"backfill {backfill['id']} ({backfill['status']}) already targets "
                f"{both[0]}{'...' + both[-1] if len(both) > 1 else ''}: wait for it or cancel "
                "it in the UI"
            )
    return None


def look_at(url: str, backfill_id: str) -> Callable[[], Snapshot]:
    """The backfill and its runs, as the webserver reports them (backfill_runs.wait's look)."""

    def look() -> Snapshot:
        data = call(url, BACKFILL, {"id": backfill_id})
        found = _result(data, "partitionBackfillOrError", url)
        runs = []
        for run in found["runs"]:
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            start, end = run.get("startTime"), run.get("endTime")
            seconds = end - start if start and end and run["status"] in FINISHED else None
            progress = RunProgress(run["runId"], run_days(tags), run["status"], seconds)
            if run["status"] == "FAILURE":
                failed = [s["stepKey"] for s in run["stepStats"] if s["status"] == "FAILURE"]
                progress.error = ", ".join(failed) + ": failed (the run's page in the UI)"
            runs.append(progress)
        error = ((found.get("error") or {}).get("message") or "").strip()
        return Snapshot(found["status"], error, runs)

    return look


def cancel_if_untouched(url: str, backfill_id: str) -> None:
    """As backfill_runs.cancel_if_untouched, through the webserver: a backfill with no run
    yet is canceled rather than left for its daemon."""
    snapshot = look_at(url, backfill_id)()
    if snapshot.status == "REQUESTED" and not snapshot.runs:
        _result(call(url, CANCEL, {"id": backfill_id}), "cancelPartitionBackfill", url)
