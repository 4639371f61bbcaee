"""The `aps-etl` command: bad input ends in one line naming the cause and exit status 2;
help shows defaults and examples; `run` keeps a source seeded earlier."""

import datetime as dt
import re
from pathlib import Path

import pytest

from aps_etl.cli.main import main
from aps_etl.cli.params import check_partition
from aps_etl.lib.business_days import last_complete_day


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    return err


def test_malformed_date_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["seed-source", "--start-date", "2026-13-45"])
    assert exit_info.value.code == 2
    assert "not an ISO date (YYYY-MM-DD): '2026-13-45'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run"], ["backfill", "--to", "2026-11-22"]])
def test_an_impossible_day_is_refused_before_anything_runs(
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APS_LOCAL_HOME", str(tmp_path))
    flag = "--date" if command == ["run"] else "--from"
    err = _refused([*command, flag, "2026-13-45"], capsys)
    assert err.startswith(f"aps-etl {command[0]}: invalid partition key '2026-13-45'")
    assert not (tmp_path / "postgres").exists()  # nothing was started or seeded


def test_days_outside_the_plant_history_are_refused_with_the_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    future = (last_complete_day() + dt.timedelta(days=1)).isoformat()
    err = _refused(["backfill", "--from", "2026-11-20", "--to", future], capsys)
    assert f"{future} has not ended yet" in err and str(last_complete_day()) in err
    err = _refused(["backfill", "--from", "2024-12-31", "--to", "2025-01-02"], capsys)
    assert "2024-12-31 is before the plant's first business day 2025-01-01 (APS_FIRST_DAY)" in err
    err = _refused(["backfill", "--from", "2026-11-22", "--to", "2026-11-20"], capsys)
    assert "--to 2026-11-20 is before --from 2026-11-22" in err
    # the first day is a setting (read with the definitions; here, by the check itself)
    monkeypatch.setenv("APS_FIRST_DAY", "2020-01-01")
    assert check_partition("2024-12-31") == "2024-12-31"


def test_unknown_environment_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APS_ENV", "staging")
    err = _refused(["seed-source", "--days", "1"], capsys)
    assert "unknown environment 'staging' (APS_ENV)" in err


def test_seed_source_does_not_offer_production(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["seed-source", "--env", "prod"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'prod'" in capsys.readouterr().err


def test_missing_stack_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APS_STACK_HOME", str(tmp_path / "no-stack"))
    for name in ("APS_PG_HOST", "APS_PG_PORT", "APS_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    err = _refused(["seed-source", "--env", "dev", "--days", "1"], capsys)
    assert "dev stack settings missing" in err and "infra/stack up" in err


def test_help_shows_defaults_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "aps-etl backfill --from 2026-11-20 --to 2026-11-22" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["reconcile", "--help"])
    assert "(default 7)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["seed-source", "--help"])
    out = capsys.readouterr().out
    assert (
        "(default: 3)" in out
        and "(default: 42)" in out
        and "prod" not in out.split("--env")[1][:20]
    )


def test_run_keeps_a_source_seeded_earlier_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aps_etl.devdata import seed_source
    from aps_etl.env.embedded import SOURCE_DB, start_embedded_postgres
    from aps_etl_tests.pipeline_harness import fetch

    monkeypatch.setenv("APS_LOCAL_HOME", str(tmp_path))
    monkeypatch.setenv("APS_ENV", "local")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the home `run` makes there
    monkeypatch.delenv("APS_LAKE_ROOT", raising=False)
    uri = start_embedded_postgres(tmp_path / "postgres").uri(SOURCE_DB)
    seed_source(uri, start_date=dt.date(2026, 10, 5), days=2, lots=40, progress=False)
    count = "select count(*) as n from lot_history"
    before = fetch(uri, count)
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "already seeded (lot events " in out and " to 2026-10-06): kept" in out
    assert "partition 2026-10-06 succeeded" in out
    # each step printed as it finished, before the report
    steps = re.findall(r"\[[#.]{20}\] \[(\d+)/(\d+)\] +[0-9.]+ s  (\S+) +done", out)
    assert [int(k) for k, _, _ in steps] == list(range(1, len(steps) + 1))
    assert steps[-1][2] == "load__aps_daily" and steps[-1][0] == steps[-1][1]
    assert f"[{'#' * 20}] [{steps[-1][0]}/" in out  # the bar full at the last step
    assert out.index("load__aps_daily") < out.index("succeeded in")
    assert fetch(uri, count) == before
    assert main(["run", "--reseed", "--date", "2026-11-21"]) == 0
    assert "partition 2026-11-21 succeeded" in capsys.readouterr().out
    after = fetch(uri, count)
    assert after != before  # the demo data
    assert main(["run"]) == 0  # again: the demo source kept, the demo day run
    out = capsys.readouterr().out
    assert "kept" in out and "partition 2026-11-21 succeeded" in out
    assert fetch(uri, count) == after


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--job", "bad/../x", "--table", "process_result", "2026-11-21"], "'bad/../x'"),
        (["--job", "aps_input", "--table", "../etc", "2026-11-21"], "'../etc'"),
        (["--job", "aps_input", "--table", "process_result", "2026-11-31"], "'2026-11-31'"),
        (
            ["--job", "aps_plan", "--table", "plan_production", "--partition-name", "run_id"]
            + ["R 1/../x"],
            "'R 1/../x'",
        ),
    ],
)
def test_lake_history_refuses_a_path_segment_by_name_before_reading(
    argv: list[str],
    named: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APS_LOCAL_HOME", str(tmp_path))
    err = _refused(["lake", "history", *argv], capsys)
    assert err.startswith("aps-etl lake: ") and named in err, err
    assert not any(tmp_path.iterdir())  # no embedded database started, no lake touched
