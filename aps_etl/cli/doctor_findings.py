"""What killed runs left behind, for `aps-etl doctor` (doctor.py), and with --fix removing it.

Looks for
- runs STARTED/STARTING in the Dagster instance whose worker process is gone (fix: marked
  FAILURE, which fires the failure alert and frees their queue slots);
- stage tables in `aps_stage` no live run owns (fix: dropped), and tables in
  `aps_partitions` attached to no target (fix: dropped);
- temporary lake files of dead processes (`.tmp-<pid>-*` in a local lake, spool folders
  `aps-lake-<pid>-*` in the temp dir) and incomplete S3 multipart uploads older than an
  hour (fix: removed / aborted);
- unfinished Trino queries of dead runs (fix: killed).
Nothing here touches a loaded partition or a published lake file.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from aps_etl.instance.run_health import dead_runs, fail_dead_run
from aps_etl.lib.lake.atomic import SPOOL_PREFIX, TMP_PREFIX
from aps_etl.lib.liveness import Owner, alive, hostname, process_started
from aps_etl.lib.warehouse import stages, target
from aps_etl.lib.warehouse.leftovers import (
    kill_orphan_queries,
    run_aware,
    run_status_in,
    running_queries,
)

MULTIPART_AGE_S = 3600


@dataclass
class Finding:
    kind: str
    what: str
    detail: str
    fixed: bool = False

    def line(self) -> str:
        mark = "fixed" if self.fixed else "found"
        return f"  [{mark}] {self.kind:<18} {self.what}  ({self.detail})"


def examine(
    instance: dg.DagsterInstance,
    target_db: Any,
    lake: Any,
    trino: Any | None,
    *,
    fix: bool,
    unowned: bool = False,
) -> list[Finding]:
    """Everything found (and fixed, with `fix`). `unowned` also treats stages that record
    no owner (made before owners were recorded) as leftovers."""
    findings: list[Finding] = []
    for dead in dead_runs(instance):
        finding = Finding("dead run", f"{dead.run.job_name} {dead.run.run_id}", dead.reason)
        if fix:
            fail_dead_run(instance, dead)
            finding.fixed = True
        findings.append(finding)

    is_live = run_aware(run_status_in(instance))
    with target_db.connect() as connection:
        for stage in stages.list_stages(connection):
            if is_live(stage.owner) and (stage.owner or not unowned):
                continue
            owner = stage.owner.get("run_id") or "no recorded owner"
            findings.append(Finding("stage table", f"{target.STAGE_SCHEMA}.{stage.name}", owner))
        if fix:
            dropped = set(
                stages.drop_abandoned_stages(
                    connection, lambda o: is_live(o) and bool(o or not unowned)
                )
            )
            for finding in findings:
                if finding.kind == "stage table" and finding.what.split(".", 1)[1] in dropped:
                    finding.fixed = True
        for name in stages.orphan_partitions(connection):
            finding = Finding(
                "orphan partition", f"{target.PARTITION_SCHEMA}.{name}", "attached to no table"
            )
            if fix:
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"drop table if exists {target.ident(target.PARTITION_SCHEMA, name)}"
                    )
                connection.commit()
                finding.fixed = True
            findings.append(finding)

    findings += _temp_files(lake, fix=fix)
    if trino is not None:
        findings += _trino_queries(trino, is_live, fix=fix)
    return findings


def _pid_dead(pid: int) -> bool:
    return alive(Owner(hostname(), pid, process_started(pid) or 0.0)) is False


def _pid_of(name: str, prefix: str) -> int | None:
    try:
        return int(name[len(prefix) :].split("-", 1)[0])
    except ValueError:
        return None


def _temp_files(lake: Any, *, fix: bool) -> list[Finding]:
    findings = []
    spools = Path(tempfile.gettempdir())
    for folder in sorted(spools.glob(f"{SPOOL_PREFIX}*")):
        pid = _pid_of(folder.name, SPOOL_PREFIX)
        if pid is not None and _pid_dead(pid):
            finding = Finding("lake spool", str(folder), f"pid {pid} is gone")
            if fix:
                shutil.rmtree(folder, ignore_errors=True)
                finding.fixed = True
            findings.append(finding)
    if not lake.is_s3:
        root = Path(lake.root)
        for tmp in sorted(root.rglob(f"{TMP_PREFIX}*")) if root.exists() else []:
            pid = _pid_of(tmp.name, TMP_PREFIX)
            # names without a pid come from an earlier version: nobody writes them now
            if pid is None or _pid_dead(pid):
                finding = Finding("lake temp file", str(tmp), f"pid {pid or '?'} is gone")
                if fix:
                    tmp.unlink(missing_ok=True)
                    finding.fixed = True
                findings.append(finding)
        return findings
    bucket, _, prefix = lake.root[len("s3://") :].partition("/")
    answer = lake.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix)
    for upload in answer.get("Uploads", []):
        age = time.time() - upload["Initiated"].timestamp()
        if age < MULTIPART_AGE_S:
            continue  # may belong to a live upload
        key = upload["Key"]
        finding = Finding("s3 upload", f"s3://{bucket}/{key}", f"incomplete for {age:.0f} s")
        if fix:
            lake.fs.call_s3(
                "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
            )
            finding.fixed = True
        findings.append(finding)
    return findings


def _trino_queries(trino: Any, is_live: Any, *, fix: bool) -> list[Finding]:
    try:
        queries = running_queries(trino)
    except Exception as exc:
        return [Finding("trino", "system.runtime.queries", f"not reachable: {exc}")]
    dead = [q for q in queries if not is_live({**q.owner.as_dict(), "run_id": q.run_id})]
    killed = set(kill_orphan_queries(trino, is_live)) if fix and dead else set()
    return [
        Finding(
            "trino query", q.query_id, f"{q.state}, run {q.run_id or '?'}", q.query_id in killed
        )
        for q in dead
    ]


def print_findings(findings: list[Finding], *, fix: bool) -> None:
    if not findings:
        print("nothing left behind: no dead runs, stages, orphan partitions, temp files or queries")
        return
    for finding in findings:
        print(finding.line())
    left = [f for f in findings if not f.fixed]
    if fix:
        print(f"{len(findings) - len(left)} fixed, {len(left)} left")
    else:
        print(f"{len(findings)} found; `aps-etl doctor --fix` removes them")
