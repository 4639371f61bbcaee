"""`aps-etl lake ...`: operator actions on the lake (`history`: the snapshots of one
extract partition, with their fingerprints)."""

from __future__ import annotations

import click

from aps_etl.cli.params import Refused, env_option, environment, option, resolved


@click.group(
    "lake", help="Operator actions on the lake.", short_help="operator actions on the lake"
)
def group() -> None:
    pass


@group.command(
    "history",
    help="The snapshots of one extract partition, oldest first, with their fingerprints.",
    short_help="the snapshots of one extract partition, with their fingerprints",
    epilog="\b\nexample: aps-etl lake history --job aps_input --table process_result 2026-11-21",
)
@env_option()
@option("--job", required=True, help="lake namespace, e.g. aps_input")
@option("--table", required=True, help="e.g. process_result")
@option("--partition-name", default="date", help="date (default) or run_id")
@click.argument("partition")
def history(env: str | None, job: str, table: str, partition_name: str, partition: str) -> int:
    """Every snapshot of one extract partition, oldest first."""
    from aps_etl.lib.lake import snapshots
    from aps_etl.lib.lake.layout import LakeTable, check_partition_key

    # Checked before anything is read: each becomes a segment of a lake path.
    try:
        lake_table = LakeTable("extract", job, table, partition_name=partition_name)
    except ValueError as exc:
        raise Refused(
            f"--job/--table/--partition-name: {exc}: expected letters, digits, '_', '.', '-'"
        ) from None
    check_partition_key(partition_name, partition)  # PartitionKeyError: one line, exit 2
    lake = resolved(environment(env))["lake"]
    found = snapshots.history(lake, lake_table, partition)
    if not found:
        print(f"no snapshot of {job}/{table} for {partition} in {lake.root}")
        return 1
    print(f"snapshots of {job}/{table} {partition_name}={partition}:")
    for snap in found:
        fp = snap.fingerprint.describe() if snap.fingerprint else "no fingerprint (legacy)"
        newest = "  <- newest, read by transforms" if snap is found[-1] else ""
        how = snap.method
        if snap.method == "incremental":
            how = f"delta: {snap.delta_rows} changed rows on version {snap.base_version}"
        print(f"  v{snap.version:<3} taken {snap.taken_at or '?':<25} {how}{newest}")
        print(f"       {snap.rows:,} rows; source fingerprint: {fp}")
        print(f"       {snap.uri}")
    return 0
