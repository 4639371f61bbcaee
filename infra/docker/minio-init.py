"""One-shot setup of the compose deployment's MinIO, as its root user: the lake's bucket,
the pipeline's user (read and write the bucket: infra/docker/lake-pipeline-policy.json) and
Trino's read-only user (infra/trino/lake-reader-policy.json). Idempotent. The root keys stay
in MinIO's container and this one's."""

import os

import s3fs
from minio import MinioAdmin
from minio.credentials import StaticProvider

root = StaticProvider(os.environ["MINIO_ROOT_USER"], os.environ["MINIO_ROOT_PASSWORD"])
fs = s3fs.S3FileSystem(
    key=os.environ["MINIO_ROOT_USER"],
    secret=os.environ["MINIO_ROOT_PASSWORD"],
    client_kwargs={"endpoint_url": "http://minio:9000"},
)
if not fs.exists("data-lake"):
    fs.mkdir("data-lake")
admin = MinioAdmin(endpoint="minio:9000", credentials=root, secure=False)
for policy, path, access, secret in (
    ("aps-lake-pipeline", "/policies/lake-pipeline-policy.json", "APS_S3_ACCESS_KEY",
     "APS_S3_SECRET_KEY"),
    ("aps-trino-lake-reader", "/policies/lake-reader-policy.json", "APS_TRINO_S3_ACCESS_KEY",
     "APS_TRINO_S3_SECRET_KEY"),
):  # fmt: skip
    admin.policy_add(policy, policy_file=path)
    admin.user_add(os.environ[access], os.environ[secret])
    admin.policy_set(policy, user=os.environ[access])
print("minio-init: bucket data-lake, users for the pipeline and for Trino")
