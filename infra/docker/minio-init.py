"""One-shot setup of the lake's MinIO, as its root user; idempotent:

- bucket `data-lake`, versioned under `extract/` only: an extract overwritten keeps its
  earlier version (MinIO's ExcludedPrefixes leave the lake's other prefixes unversioned);
- bucket `dagster-logs` for Dagster's compute logs (infra/docker/dagster.yaml), out of
  the lake that Trino's user reads; logs an earlier version kept in the lake move there;
- users, each with its policy: the pipeline's (infra/docker/lake-pipeline-policy.json:
  read and write the lake, never delete an extract; write the logs), Trino's
  (infra/trino/lake-reader-policy.json: read the lake) and the webserver's
  (infra/docker/logs-reader-policy.json: read the logs).

compose's `minio-init` runs it as a script (`main`: settings from its environment, the
policies mounted under /policies); the dev stack (infra/dev_stack/minio.py) and the tests
import its functions. The root keys stay in MinIO's container and this one's.

Object lock is not used: MinIO (as S3 before 2023) turns it on only for a bucket made with
it, so an existing deployment's lake could never get it, and a locked bucket refuses
ExcludedPrefixes: every overwrite of the transforms and Trino's metastore would be kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from minio import Minio, MinioAdmin
from minio.commonconfig import CopySource
from minio.credentials import StaticProvider
from minio.versioningconfig import ENABLED, VersioningConfig

LAKE_BUCKET = "data-lake"
LOGS_BUCKET = "dagster-logs"
# Where dagster.yaml keeps the compute logs in LOGS_BUCKET, and where an earlier version
# kept them in the lake.
LOGS_PREFIX = "compute_logs/"
OLD_LOGS_PREFIX = "_dagster/compute_logs/"
# The lake's top-level prefixes that are not extracts, kept out of versioning (MinIO takes
# at most 10; each matches as a prefix, `*` as a wildcard): the transforms
# (aps_etl/lib/lake/layout.py: STAGES), Trino's file metastore (infra/dev_stack/config.py),
# the compute logs of earlier versions, and the dev stack's test and benchmark corners
# (APS_LAKE_ROOT under tests/ and bench/; the lake schemas of test_stack.py and
# test_trino_security.py). A prefix not listed here is versioned: it costs only space.
UNVERSIONED = (
    "transform/",
    "_trino_metastore/",
    "_dagster/",
    "tests/",
    "bench/",
    "stack-test-",
    "acl_test_",
)


@dataclass(frozen=True)
class User:
    """A MinIO user and the policy (a JSON file) it gets, under the policy's name."""

    policy: str
    policy_file: Path
    access_key: str
    secret_key: str


def lake_users(env: Mapping[str, str], pipeline_policy: Path, reader_policy: Path) -> list[User]:
    """The pipeline's and Trino's users, in both deployments, their keys from `env`."""
    return [
        User("aps-lake-pipeline", pipeline_policy,
             env["APS_S3_ACCESS_KEY"], env["APS_S3_SECRET_KEY"]),
        User("aps-trino-lake-reader", reader_policy,
             env["APS_TRINO_S3_ACCESS_KEY"], env["APS_TRINO_S3_SECRET_KEY"]),
    ]  # fmt: skip


def compose_users(env: Mapping[str, str], policies: Path) -> list[User]:
    """The compose deployment's users, their keys from `env` (infra/.env), their policies
    mounted in one folder: the lake's two and the webserver's logs reader."""
    return [
        *lake_users(env, policies / "lake-pipeline-policy.json",
                    policies / "lake-reader-policy.json"),
        User("aps-logs-reader", policies / "logs-reader-policy.json",
             env["APS_LOGS_S3_ACCESS_KEY"], env["APS_LOGS_S3_SECRET_KEY"]),
    ]  # fmt: skip


def make_buckets(client: Minio, buckets: Iterable[str]) -> None:
    for bucket in buckets:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)


def version_extracts(client: Minio, bucket: str = LAKE_BUCKET) -> None:
    """Versioning on for the bucket, but for the prefixes of UNVERSIONED."""
    client.set_bucket_versioning(
        bucket, VersioningConfig(ENABLED, excluded_prefixes=list(UNVERSIONED))
    )


def move_old_compute_logs(client: Minio) -> int:
    """Moves the compute logs an earlier version kept in the lake (which Trino's user reads)
    into the logs bucket; returns how many. None left: nothing to do."""
    moved = 0
    for item in client.list_objects(LAKE_BUCKET, prefix=OLD_LOGS_PREFIX, recursive=True):
        name = item.object_name
        target = LOGS_PREFIX + name.removeprefix(OLD_LOGS_PREFIX)
        client.copy_object(LOGS_BUCKET, target, CopySource(LAKE_BUCKET, name))
        client.remove_object(LAKE_BUCKET, name)
        moved += 1
    return moved


def add_users(admin: MinioAdmin, users: Iterable[User]) -> None:
    """Each policy (re)written, each user made (its secret reset) and given its policy."""
    for user in users:
        admin.policy_add(user.policy, policy_file=user.policy_file)
        admin.user_add(user.access_key, user.secret_key)
        admin.policy_set(user.policy, user=user.access_key)


def setup(
    endpoint: str,
    root_user: str,
    root_password: str,
    users: Iterable[User],
    *,
    logs_bucket: bool,
    secure: bool = False,
) -> None:
    """The buckets, the lake's versioning, the users; with `logs_bucket`, the compute
    logs' bucket too (the dev stack keeps its compute logs on disk: none there)."""
    client = Minio(endpoint, root_user, root_password, secure=secure)
    make_buckets(client, [LAKE_BUCKET, *([LOGS_BUCKET] if logs_bucket else [])])
    version_extracts(client)
    if logs_bucket:
        move_old_compute_logs(client)
    admin = MinioAdmin(
        endpoint=endpoint, credentials=StaticProvider(root_user, root_password), secure=secure
    )
    add_users(admin, users)


def main() -> None:
    setup(
        "minio:9000",
        os.environ["MINIO_ROOT_USER"],
        os.environ["MINIO_ROOT_PASSWORD"],
        compose_users(os.environ, Path("/policies")),
        logs_bucket=True,
    )
    print(
        f"minio-init: buckets {LAKE_BUCKET} (extracts versioned) and {LOGS_BUCKET}; users for "
        "the pipeline, Trino and the webserver's logs"
    )


if __name__ == "__main__":
    main()
