"""Writing one Parquet file so that a reader sees all of it or nothing.

A LazyFrame is streamed (sink_parquet, never collected whole) into a temporary file that
no reader looks at, then published in one step:
- local folder: a hard link (write-once: fails if the target exists) or os.replace
  (overwrite), both atomic on POSIX;
- S3: one PUT (multipart for large files), which S3 and MinIO only make visible once it
  completes.
A crash before publishing leaves at most a `.tmp-*` file, which readers skip (Hive and
Trino ignore names starting with '.' or '_', and the IO manager only opens `data.parquet`).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from aps_etl.lib.failpoints import failpoint
from aps_etl.lib.lake.storage import LakeResource

# Temporary files name the pid that writes them, so leftovers of a killed process are known.
TMP_PREFIX = ".tmp-"
SPOOL_PREFIX = "aps-lake-"


class ImmutablePartitionError(RuntimeError):
    """An attempt to overwrite a write-once (extract) partition."""


@dataclass(frozen=True)
class WrittenFile:
    uri: str
    rows: int
    size_bytes: int


def _sink(frame: pl.LazyFrame | pl.DataFrame, path: Path, metadata: dict[str, str] | None) -> int:
    if isinstance(frame, pl.LazyFrame):
        frame.sink_parquet(path, compression="zstd", statistics=True, metadata=metadata)
    else:
        frame.write_parquet(path, compression="zstd", statistics=True, metadata=metadata)
    return pq.read_metadata(path).num_rows


def write_parquet(
    lake: LakeResource,
    parts: tuple[str, ...],
    frame: pl.LazyFrame | pl.DataFrame,
    *,
    immutable: bool,
    metadata: dict[str, str] | None = None,
    expected_rows: int | None = None,
) -> WrittenFile:
    """Writes `frame` at lake path `parts` atomically; refuses to replace it if immutable.
    `metadata` goes into the Parquet footer's key-value metadata. With `expected_rows`, a
    file whose footer counts other rows is not published (RowCountError)."""
    uri = lake.uri(*parts)
    fs = lake.fs
    if lake.is_s3:
        if immutable and fs.exists(uri):
            raise ImmutablePartitionError(_immutable_message(uri))
        # the spool folder names its owner: `aps-etl doctor` removes those of dead runs
        with tempfile.TemporaryDirectory(prefix=f"{SPOOL_PREFIX}{os.getpid()}-") as spool:
            tmp = Path(spool) / "data.parquet"
            rows = _sink(frame, tmp, metadata)
            _check_rows(uri, rows, expected_rows)
            failpoint("lake.publish")  # a kill here: written, not published
            failpoint(f"lake.publish.{parts[0]}")  # the same, of one stage (extract, transform)
            size = tmp.stat().st_size
            if not immutable:
                fs.put_file(str(tmp), uri)
            else:
                # A conditional PUT (If-None-Match: *): of two writers, exactly one wins.
                try:
                    fs.put_file(str(tmp), uri, mode="create")
                except OSError as exc:
                    if "pre-condition" not in str(exc) and "PreconditionFailed" not in str(exc):
                        raise
                    raise ImmutablePartitionError(_immutable_message(uri)) from None
        return WrittenFile(uri, rows, size)

    final = Path(uri)
    final.parent.mkdir(parents=True, exist_ok=True)
    if immutable and final.exists():
        raise ImmutablePartitionError(_immutable_message(uri))
    tmp = final.parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}.parquet"
    try:
        rows = _sink(frame, tmp, metadata)
        _check_rows(uri, rows, expected_rows)
        failpoint("lake.publish")  # a kill here: written, not published
        failpoint(f"lake.publish.{parts[0]}")  # the same, of one stage (extract, transform)
        size = tmp.stat().st_size
        if immutable:
            try:
                os.link(tmp, final)  # atomic create-if-absent
            except FileExistsError:
                raise ImmutablePartitionError(_immutable_message(uri)) from None
        else:
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return WrittenFile(uri, rows, size)


class RowCountError(RuntimeError):
    """The file written holds other rows than the data handed to it: not published."""


def _check_rows(uri: str, rows: int, expected: int | None) -> None:
    if expected is not None and rows != expected:
        raise RowCountError(
            f"{uri}: the Parquet file holds {rows:,} rows, {expected:,} were handed to it; "
            "nothing was published"
        )


def _immutable_message(uri: str) -> str:
    return (
        f"refusing to overwrite immutable lake file {uri}: extract snapshots are "
        "write-once; a change in the source becomes a new snapshot version beside it."
    )
