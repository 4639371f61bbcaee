"""Least privilege in the compose deployment's files, checked without an engine (issue 27):
Trino's `aps` catalog as the stage writer, the compute logs in a bucket of their own that
only the webserver's read-only user and the pipeline's reach, extracts the pipeline may not
delete. The same MinIO setup runs on the dev stack: aps_etl_tests/stack/test_least_privilege.py."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from aps_etl.env.container_start import FORBIDDEN, ROLE_NEEDS
from aps_etl.env.stack import REPO_ROOT as REPO

COMPOSE = REPO / "infra" / "docker-compose.yml"
DOCKER = REPO / "infra" / "docker"
PIPELINE = DOCKER / "lake-pipeline-policy.json"
LOGS_READER = DOCKER / "logs-reader-policy.json"
TRINO_READER = REPO / "infra" / "trino" / "lake-reader-policy.json"

if str(REPO / "infra") not in sys.path:
    sys.path.insert(0, str(REPO / "infra"))

from dev_stack.minio import minio_init  # noqa: E402  (infra/docker/minio-init.py)


def _services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _variables(value: object) -> set[str]:
    """The infra/.env variables a compose value reads (${NAME...})."""
    return set(re.findall(r"\$\{(\w+)", str(value)))


def _statements(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["Statement"]


def test_trino_reaches_aps_as_the_stage_writer_not_its_owner() -> None:
    services = _services()
    trino = services["trino"]["environment"]
    assert {"APS_APS_STAGE_WRITER_USER", "APS_APS_STAGE_WRITER_PASSWORD"} <= set(trino)
    assert not [name for name in trino if name.startswith("APS_APS_LOADER")]
    assert not [v for v in trino.values() if "APS_APS_LOADER" in str(v)]
    catalog = (DOCKER / "trino" / "catalog" / "aps.properties").read_text()
    assert "connection-user=${ENV:APS_APS_STAGE_WRITER_USER}\n" in catalog
    assert "connection-password=${ENV:APS_APS_STAGE_WRITER_PASSWORD}\n" in catalog
    # the database's container makes the role, and serves without its password
    assert "APS_APS_STAGE_WRITER_PASSWORD" in services["postgres"]["environment"]
    entrypoint = (DOCKER / "postgres-entrypoint.sh").read_text()
    assert "APS_APS_STAGE_WRITER_USER APS_APS_STAGE_WRITER_PASSWORD" in entrypoint
    assert "-u APS_APS_STAGE_WRITER_PASSWORD" in entrypoint
    # a Dagster container refuses to start with it (it is Trino's)
    assert "APS_APS_STAGE_WRITER_PASSWORD" in FORBIDDEN
    for name in ("code-location", "webserver", "daemon"):
        assert "APS_APS_STAGE_WRITER_PASSWORD" not in services[name]["environment"]


def test_the_compute_logs_have_a_bucket_of_their_own() -> None:
    init = minio_init()
    config = yaml.safe_load((DOCKER / "dagster.yaml").read_text())["compute_logs"]["config"]
    assert config["bucket"] == init.LOGS_BUCKET != init.LAKE_BUCKET
    assert config["prefix"] + "/" == init.LOGS_PREFIX
    # the webserver needs no lake setting to show them
    assert "APS_S3_BUCKET" not in ROLE_NEEDS["webserver"]


def test_the_webserver_reads_the_logs_with_a_read_only_user() -> None:
    services = _services()
    web = services["webserver"]["environment"]
    assert _variables(web["AWS_ACCESS_KEY_ID"]) == {"APS_LOGS_S3_ACCESS_KEY"}
    assert _variables(web["AWS_SECRET_ACCESS_KEY"]) == {"APS_LOGS_S3_SECRET_KEY"}
    read = set().union(*(_variables(v) for v in web.values()))
    lake_keys = {"APS_S3_ACCESS_KEY", "APS_S3_SECRET_KEY", "APS_TRINO_S3_SECRET_KEY"}
    assert not read & lake_keys, read & lake_keys
    assert not {"APS_S3_ACCESS_KEY", "APS_S3_SECRET_KEY", "APS_S3_BUCKET"} & set(web)
    # only the webserver and MinIO's setup get the logs reader's keys
    for name, service in services.items():
        uses = set().union(*(_variables(v) for v in (service.get("environment") or {}).values()))
        if "APS_LOGS_S3_SECRET_KEY" in uses:
            assert name in ("webserver", "minio-init"), name
    # MinIO's setup makes that user from a policy it mounts
    init = services["minio-init"]
    assert {"APS_LOGS_S3_ACCESS_KEY", "APS_LOGS_S3_SECRET_KEY"} <= set(init["environment"])
    mounted = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    users = minio_init().compose_users(
        {name: "x" for name in init["environment"]}, Path("/policies")
    )
    for user in users:
        assert str(user.policy_file) in mounted, user.policy_file
    assert mounted["/policies/logs-reader-policy.json"] == "./docker/logs-reader-policy.json"


def test_the_policies_keep_each_user_to_its_bucket() -> None:
    init = minio_init()
    lake, logs = f"arn:aws:s3:::{init.LAKE_BUCKET}", f"arn:aws:s3:::{init.LOGS_BUCKET}"
    # the logs reader: list and read the logs' bucket, nothing else
    for statement in _statements(LOGS_READER):
        assert statement["Effect"] == "Allow"
        assert set(statement["Action"]) <= {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}
        assert set(statement["Resource"]) <= {logs, f"{logs}/*"}
    # Trino's reader never reaches the logs
    for statement in _statements(TRINO_READER):
        assert not [r for r in statement["Resource"] if r.startswith(logs)]
    # the pipeline writes the logs but deletes none, and never deletes an extract
    pipeline = _statements(PIPELINE)
    on_logs = [s for s in pipeline if f"{logs}/*" in s["Resource"]]
    assert on_logs and all(s["Effect"] == "Allow" for s in on_logs)
    assert "s3:PutObject" in {a for s in on_logs for a in s["Action"]}
    assert not [a for s in on_logs for a in s["Action"] if "Delete" in a]
    denied = [s for s in pipeline if s["Effect"] == "Deny"]
    assert denied == [
        {
            "Sid": "ExtractsAreNeverDeleted",
            "Effect": "Deny",
            "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
            "Resource": [f"{lake}/extract/*"],
        }
    ]
    # versioning keeps what an overwrite replaces, under extract/ alone: no excluded
    # prefix covers it, and MinIO takes at most 10
    assert len(init.UNVERSIONED) <= 10
    assert not [p for p in init.UNVERSIONED if "extract/".startswith(p.rstrip("*"))]
    assert {"transform/", "_trino_metastore/"} <= set(init.UNVERSIONED)
