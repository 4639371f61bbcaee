"""Where the lake lives: a local folder or an S3 bucket (MinIO locally, AWS in production).

One resource gives the three views every lake user needs of the same place: an fsspec
filesystem (listing, atomic puts), a UPath (Dagster's UPathIOManager), and the storage
options for Polars' native object-store scans and DuckDB's fsspec registration.
Credentials stay in the resource's config (fed by dg.EnvVar) and are never rendered.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

# botocore logs signed request headers (with the S3 access key id) at DEBUG: never let a
# DEBUG root logger carry them into logs.
logging.getLogger("botocore").setLevel(logging.INFO)

if TYPE_CHECKING:
    import fsspec
    from upath import UPath


class LakeResource(dg.ConfigurableResource):
    """The data lake root and how to reach it."""

    root: str = Field(description="Local folder, or s3://bucket[/prefix]")
    s3_endpoint: str | None = Field(default=None, description="e.g. http://127.0.0.1:59000")
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def fsspec_options(self) -> dict[str, Any]:
        if not self.is_s3:
            return {}
        options: dict[str, Any] = {"client_kwargs": {"region_name": self.s3_region}}
        if self.s3_endpoint:
            options["endpoint_url"] = self.s3_endpoint
        if self.s3_access_key:
            options["key"] = self.s3_access_key
            options["secret"] = self.s3_secret_key
        return options

    def polars_storage_options(self) -> dict[str, str] | None:
        """Options for Polars' object_store (scan_parquet on s3://)."""
        if not self.is_s3:
            return None
        options = {"aws_region": self.s3_region}
        if self.s3_endpoint:
            options["aws_endpoint_url"] = self.s3_endpoint
            options["aws_allow_http"] = str(self.s3_endpoint.startswith("http://")).lower()
        if self.s3_access_key:
            options["aws_access_key_id"] = self.s3_access_key
            options["aws_secret_access_key"] = self.s3_secret_key or ""
        return options

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self.is_s3:
            import s3fs

            # fsspec caches instances by arguments, so this is cheap to call again.
            # The lake is read right after it is written: no listing cache.
            return s3fs.S3FileSystem(use_listings_cache=False, **self.fsspec_options())
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(auto_mkdir=True)

    def upath(self, *parts: str) -> UPath:
        from upath import UPath

        base = UPath(self.root, **self.fsspec_options())
        return base.joinpath(*parts) if parts else base

    def uri(self, *parts: str) -> str:
        """Full address of a lake path, e.g. s3://data-lake/extract/... (no credentials)."""
        return "/".join([self.root.rstrip("/"), *parts])
