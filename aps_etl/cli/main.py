"""The `aps-etl` command: a click group of the commands (one module each) and its exit
statuses.

- 0 done; 1 a run (or a check) failed; 130 interrupted (`backfill --policy`: Ctrl-C, SIGTERM);
- 3 a service's fault: a database, the lake, Trino or Dagster's own storage unreachable or
  dropping the connection after the retries (a run that failed only on such faults, or the
  command's own query): one line naming the service and the cause (faults.py);
- 2 bad input. Click's own usage errors (an unknown option, a malformed date, a value not
  among the choices) in click's format, as SystemExit(2); the input a command refuses on
  the project's terms (a day outside the plant's history, an unknown APS_ENV, a bad
  setting, a service that refuses the credentials) in one line naming the cause, no
  traceback, returned. The services' errors name no secret."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import click

from aps_etl.cli import backfill, doctor, lake, reconcile, report, run, seed_source
from aps_etl.cli.params import Refused

# Bad input or an unusable setting: one line naming the cause, exit status 2.
USAGE_EXIT = 2

EXAMPLES = """examples:

\b
  aps-etl run                                   the demo day on the embedded default
  aps-etl run --env dev --date 2026-11-21       one day on the dev stack
  aps-etl backfill --from 2026-11-20 --to 2026-11-22
  aps-etl reconcile --dry-run                   what changed in the source, last 7 days
  aps-etl lake history --job aps_input --table process_result 2026-11-21
  aps-etl doctor --fix                          clean up after killed runs
  aps-etl report --days 30                      success rate, reruns, freshness lag
"""


@click.group(
    name="aps-etl",
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
def cli() -> None:
    """aps-etl: the APS ETL's operator commands (Dagster runs on the instance of
    $DAGSTER_HOME, or the project's own on the embedded default)."""


for command in (
    seed_source.command,
    run.command,
    backfill.command,
    lake.group,
    reconcile.command,
    report.command,
    doctor.command,
):
    cli.add_command(command)


def _refusal(exc: BaseException) -> bool:
    """Input or a setting the command refuses: printed as one line, exit status 2. The
    classes are imported only now: their modules import Dagster and the settings."""
    from aps_etl.lib.business_days import PartitionKeyError

    if isinstance(exc, (Refused, PartitionKeyError)):
        return True
    if isinstance(exc, click.ClickException):
        return False  # click's own usage errors keep click's format
    try:
        from aps_etl.cli.backfill_runs import BackfillError
        from aps_etl.devdata.load import SeedError
        from aps_etl.env.stack import StackSettingsMissing
        from aps_etl.lib.errors import ConfigurationError
        from aps_etl.lib.partitions import BackfillPolicyError
        from aps_etl.lib.postgres import DatabaseError
    except PartitionKeyError:  # a malformed APS_FIRST_DAY: partitions.py cannot load
        return False
    refused = (
        ConfigurationError,
        StackSettingsMissing,
        DatabaseError,
        SeedError,
        BackfillError,
        BackfillPolicyError,
    )
    return isinstance(exc, refused)


def main(argv: Sequence[str] | None = None) -> int:
    # platformdirs warns about a missing XDG_RUNTIME_DIR on headless machines: noise.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        ctx = cli.make_context("aps-etl", args)
    except click.exceptions.Exit as exc:  # --help
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    try:
        with ctx:
            return int(cli.invoke(ctx) or 0)
    except click.exceptions.Exit as exc:  # a command's --help
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        from aps_etl.cli.faults import FAULT_EXIT, describe

        fault = describe(exc)
        if fault:
            print(f"aps-etl {ctx.invoked_subcommand}: {fault}", file=sys.stderr)
            return FAULT_EXIT
        if _refusal(exc):
            # the cause in one line, not a traceback (the services' errors name no secret)
            message = exc.message if isinstance(exc, click.ClickException) else str(exc)
            print(f"aps-etl {ctx.invoked_subcommand}: {message}", file=sys.stderr)
            return USAGE_EXIT
        if isinstance(exc, click.ClickException):  # click's usage errors: its own format
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":
    sys.exit(main())
