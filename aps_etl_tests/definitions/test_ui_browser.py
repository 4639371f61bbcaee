"""The Dagster UI in a real browser, on the embedded default.

One partition of `aps_daily` is run into a Dagster instance of its own, `dagster-webserver`
serves that instance with our code location, and Debian's Chromium (driven by Playwright)
checks that the pages an operator uses show the assets, the partition's metadata, the
asset checks, the job, schedule and sensor, the launchpad and the backfill dialog.

Every test saves a full-page screenshot to `.screenshots/<test name>.png`, pass or fail.
Nothing here skips: without Chromium (`scripts/test-tools` installs it), without a
webserver or without an expected text, the test fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from aps_etl.defs.freshness import FRESHNESS_TAG
from aps_etl.defs.validation import CHECKS
from aps_etl.devdata import seed_source
from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import REPO_ROOT
from aps_etl_tests.pipeline_harness import step_failures, target_partition

# Chromium comes from Debian's packages (scripts/test-tools): not in `make unit`.
pytestmark = pytest.mark.tools

REPO = REPO_ROOT
SCREENSHOTS = REPO / ".screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# Headless on a closed network: without the background-networking flags Chromium's own
# connections (updates, sync, QUIC probes) are refused and slow everything down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEBSERVER = REPO / ".venv" / "bin" / "dagster-webserver"
MODULE = "aps_etl.definitions"
# `-m <module>` names the code location after the module (pyproject's code_location_name
# applies only when the location is loaded from pyproject.toml).
LOCATION = MODULE
START = dt.date(2026, 11, 20)
PARTITION = "2026-11-21"
# a single-run backfill over three other days (run first: PARTITION's run is the latest)
RANGE = ("2026-11-23", "2026-11-24", "2026-11-25")
SEEDED_DAYS = 6
JOB = "aps_daily"
SCHEDULE = "aps_daily_schedule"
SENSOR = "plan_run_sensor"
CHANGE_SENSOR = "source_change_sensor"
WIP = dg.AssetKey(["transform", "aps_input", "aps_input_wip"])
# One asset of each daily scenario: (domain, table).
SHOWN = (
    ("aps_input", "aps_input_wip"),
    ("aps_kpi", "aps_kpi_bottleneck"),
    ("aps_balance", "aps_balance_monitor"),
)
SERVER_TIMEOUT_S = 180
TIMEOUT_MS = 30_000

expect.set_options(timeout=TIMEOUT_MS)


@dataclass(frozen=True)
class DagsterUI:
    url: str
    run_id: str
    defs: dg.Definitions
    wip_metadata: dict[str, Any]
    lake_root: str
    range_run_id: str
    range_wip_rows: dict[str, int]  # each day of RANGE: its aps_input_wip rows in the target
    freshness_expected: str  # the day the freshness checks expect loaded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for_webserver(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"dagster-webserver exited with code {process.returncode}:\n{log_tail(log)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver did not answer in {SERVER_TIMEOUT_S} s:\n{log_tail(log)}")


def stop_process_group(process: subprocess.Popen) -> None:
    """The webserver and its code server share the process group we started it in."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # a code server that outlived its parent
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium: Playwright's own browser downloads are not reachable here."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/test-tools to install it"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    """A seeded embedded source, one run of the daily job for PARTITION in a Dagster
    instance of its own, and dagster-webserver serving that instance."""
    root = tmp_path_factory.mktemp("dagster-ui")
    home, dagster_home = root / "local", root / "dagster"
    home.mkdir()
    dagster_home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    # The "join the community" dialog covers every page on localhost until it is seen.
    (dagster_home / ".nux").mkdir()
    (dagster_home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_LOCAL_HOME", str(home))
        mp.setenv("APS_ENV", "local")
        mp.setenv("DAGSTER_HOME", str(dagster_home))
        mp.delenv("APS_LAKE_ROOT", raising=False)
        # The embedded PostgreSQL stays up until this process exits: the webserver's code
        # server (same APS_LOCAL_HOME) loads definitions whose resources point at it.
        pg = start_embedded_postgres(home / "postgres")
        seed_source(pg.uri(SOURCE_DB), start_date=START, days=SEEDED_DAYS, progress=False)

        from aps_etl.definitions import build_defs

        defs = build_defs(resources_for("local"))
        with dg.DagsterInstance.get() as instance:
            # Create the instance's storage before the webserver opens it too.
            instance.get_runs(limit=1)
            instance.get_asset_keys()
            instance.all_instigator_state()

            url = f"http://127.0.0.1:{free_port()}"
            log = root / "dagster-webserver.log"
            with log.open("w") as out:
                webserver = subprocess.Popen(
                    [str(WEBSERVER), "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]]
                    + ["-m", MODULE],
                    cwd=REPO,
                    env=os.environ.copy(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                # The runs go on while the webserver and its code server start.
                ranged = defs.resolve_job_def(JOB).execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    tags={
                        "dagster/asset_partition_range_start": RANGE[0],
                        "dagster/asset_partition_range_end": RANGE[-1],
                    },
                )
                assert ranged.success, f"{JOB} {RANGE}: {step_failures(ranged)}"
                range_rows = {
                    day: len(
                        target_partition(
                            pg.uri(TARGET_DB), "aps_input_wip", dt.date.fromisoformat(day)
                        )
                    )
                    for day in RANGE
                }
                result = defs.resolve_job_def(JOB).execute_in_process(
                    partition_key=PARTITION,
                    instance=instance,
                    raise_on_error=False,
                    run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                )
                assert result.success, f"{JOB} {PARTITION}: {step_failures(result)}"
                # the freshness checks, as their sensor runs them (after the last
                # load: the UI shows a check against the latest materialization)
                checks = {
                    key
                    for key in defs.resolve_asset_graph().asset_check_keys
                    if key.name == "freshness_check"
                }
                defs.resolve_implicit_global_asset_job_def().get_subset(
                    asset_check_selection=checks, asset_selection=set()
                ).execute_in_process(instance=instance, tags={FRESHNESS_TAG: "true"})
                (wip,) = [
                    event.materialization
                    for event in result.get_asset_materialization_events()
                    if event.asset_key == WIP
                ]
                wait_for_webserver(url, webserver, log)
                yield DagsterUI(
                    url=url,
                    run_id=result.run_id,
                    defs=defs,
                    wip_metadata={k: getattr(v, "value", v) for k, v in wip.metadata.items()},
                    lake_root=str(home / "lake"),
                    range_run_id=ranged.run_id,
                    range_wip_rows=range_rows,
                    freshness_expected=_freshness_expected(),
                )
            finally:
                stop_process_group(webserver)


@pytest.fixture
def page(browser: Browser, dagster_ui: DagsterUI, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page; its full-page screenshot lands in .screenshots/, on failure too."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    try:
        yield tab
    finally:
        SCREENSHOTS.mkdir(exist_ok=True)
        try:
            tab.screenshot(path=SCREENSHOTS / f"{request.node.name}.png", full_page=True)
        except Exception as exc:  # the screenshot must not hide the test's own failure
            print(f"screenshot of {request.node.name} failed: {exc}", file=sys.stderr)
        context.close()


def visit(page: Page, ui: DagsterUI, route: str) -> None:
    page.goto(ui.url + route, wait_until="networkidle")


def expect_visible(page: Page, *texts: str, exact: bool = False) -> None:
    for text in texts:
        expect(page.get_by_text(text, exact=exact).filter(visible=True).first).to_be_visible()


def metadata_row(page: Page, label: str):
    """The row of a metadata table whose label is exactly `label`."""
    return page.locator("tr").filter(has=page.get_by_text(label, exact=True)).filter(visible=True)


def asset_route(domain: str, table: str, stage: str = "transform") -> str:
    return f"/assets/{stage}/{domain}/{table}"


# -- assets ---------------------------------------------------------------------------


def test_catalog_lists_the_assets(page: Page, dagster_ui: DagsterUI) -> None:
    # The catalog renders only the rows in view (and truncates long keys in a narrow
    # column): a big viewport shows every asset in full.
    page.set_viewport_size({"width": 2400, "height": 3000})
    visit(page, dagster_ui, "/assets")
    for domain, table in SHOWN:
        expect_visible(
            page,
            f"transform / {domain} / {table}",
            f"load / {domain} / {table}",
            exact=True,
        )
    expect_visible(page, "validated / aps_daily", LOCATION, exact=True)


def test_global_lineage_shows_the_asset_groups(page: Page, dagster_ui: DagsterUI) -> None:
    visit(page, dagster_ui, "/asset-groups")
    expect_visible(page, "Global asset lineage")
    # Collapsed, one node per asset group: extract -> transform -> gate -> load.
    graph = page.locator("foreignObject")
    groups = ["aps_input_extract", "validation_gates"]
    groups += [f"{domain}{stage}" for domain, _ in SHOWN for stage in ("", "_load")]
    for group in groups:
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()


def test_gate_lineage_shows_the_daily_assets_and_their_checks(
    page: Page, dagster_ui: DagsterUI
) -> None:
    # Room enough for the graph to draw full nodes (name, checks, partitions), not the
    # minimal boxes of a zoomed-out graph.
    # (11 transforms one above the other: 11 x ~225 px)
    page.set_viewport_size({"width": 1800, "height": 3200})
    visit(page, dagster_ui, "/assets/validated/aps_daily?view=lineage&lineageScope=upstream")
    passed = f"{len(CHECKS)} / {len(CHECKS)} Passed"
    for _, table in SHOWN:
        node = page.locator("foreignObject").filter(has=page.get_by_text(table, exact=True))
        expect(node.first).to_be_visible()
        expect(node.first).to_contain_text(passed)


def _freshness_expected() -> str:
    """D-1 of the latest 06:00 Asia/Seoul that has passed: the day the checks expect."""
    from zoneinfo import ZoneInfo

    now = dt.datetime.now(ZoneInfo("Asia/Seoul"))
    deadline = now.replace(hour=6, minute=0, second=0, microsecond=0)
    if now < deadline:
        deadline -= dt.timedelta(days=1)
    return (deadline.date() - dt.timedelta(days=1)).isoformat()


def test_asset_partition_shows_its_materialization_metadata(
    page: Page, dagster_ui: DagsterUI
) -> None:
    visit(page, dagster_ui, f"{asset_route('aps_input', 'aps_input_wip')}?view=partitions")
    # The partition list: the materialized partition among the missing ones.
    expect_visible(page, f"Materialized ({1 + len(RANGE)})")
    partition = page.get_by_text(PARTITION, exact=True).filter(visible=True).first
    expect(partition).to_be_visible()
    partition.click()
    expect(page).to_have_url(
        f"{dagster_ui.url}/assets/transform/aps_input/aps_input_wip"
        f"?view=partitions&partition={PARTITION}"
    )
    expect_visible(page, "Latest materialization", dagster_ui.run_id[:8], JOB)
    rows, path = dagster_ui.wip_metadata["row_count"], dagster_ui.wip_metadata["parquet_path"]
    assert rows > 0 and f"date={PARTITION}" in path
    expect(metadata_row(page, "row_count")).to_contain_text(str(rows))
    expect(metadata_row(page, "parquet_path")).to_contain_text(path)


def test_asset_events_show_the_run_that_materialized_the_partition(
    page: Page, dagster_ui: DagsterUI
) -> None:
    visit(page, dagster_ui, f"{asset_route('aps_input', 'aps_input_wip')}?view=events")
    expect_visible(page, f"Partition {PARTITION} materialized in run {dagster_ui.run_id[:8]}")
    expect(metadata_row(page, "row_count").first).to_contain_text(
        str(dagster_ui.wip_metadata["row_count"])
    )
    expect_visible(page, "parquet_path", exact=True)


def test_asset_checks_show_the_validation_results(page: Page, dagster_ui: DagsterUI) -> None:
    route = f"{asset_route('aps_input', 'aps_input_wip')}?view=checks"
    rows = dagster_ui.wip_metadata["row_count"]
    visit(page, dagster_ui, route)
    expect_visible(page, f"Checks ({len(CHECKS)})")
    for name, description in CHECKS.items():
        entry = page.get_by_title(name, exact=True).filter(visible=True).first
        expect(entry).to_be_visible()
        # Each entry of the list shows the latest evaluation's status next to the name.
        expect(entry.locator("xpath=..")).to_contain_text("Succeeded")
        entry.click()
        expect(page).to_have_url(f"{dagster_ui.url}{route}&checkDetail={name}")
        expect_visible(page, "This is a blocking asset check.", description, "Passed")
        # The evaluation's metadata: every row of the partition checked, none violating.
        expect(metadata_row(page, "partitions")).to_contain_text(PARTITION)
        expect(metadata_row(page, "rows_checked")).to_contain_text(str(rows))
        expect(metadata_row(page, "violations")).to_have_text("violations0")


def test_each_partition_of_a_range_run_shows_its_own_row_count(
    page: Page, dagster_ui: DagsterUI
) -> None:
    """A single-run backfill records each day's own numbers, not the range's totals."""
    for day, rows in dagster_ui.range_wip_rows.items():
        visit(page, dagster_ui, f"{asset_route('aps_input', 'aps_input_wip')}"
              f"?view=partitions&partition={day}")  # fmt: skip
        expect_visible(page, "Latest materialization", dagster_ui.range_run_id[:8])
        expect(metadata_row(page, "row_count")).to_have_text(f"row_count{rows}")
        expect(metadata_row(page, "parquet_path")).to_contain_text(f"date={day}")
    page.screenshot(path=SCREENSHOTS / "partition-row-count.png", full_page=True)


def test_an_asset_page_shows_its_schema_and_a_plot_across_partitions(
    page: Page, dagster_ui: DagsterUI
) -> None:
    """The README's screenshot: the planners' words per column, and row_count plotted
    over the four materialized days (each its own count)."""
    from aps_etl.defs.scenarios.aps_input.schema import APS_INPUT_WIP

    visit(page, dagster_ui, asset_route("aps_input", "aps_input_wip"))
    expect_visible(page, "Columns")
    expect_visible(page, APS_INPUT_WIP.description_of("wip_lots"))
    page.get_by_text("Plots", exact=True).filter(visible=True).first.click()
    expect_visible(page, "row_count", exact=True)
    page.screenshot(path=SCREENSHOTS / "asset-page.png", full_page=True)


def test_an_asset_shows_its_column_schema_with_descriptions_before_any_run(
    page: Page, dagster_ui: DagsterUI
) -> None:
    from aps_etl.defs.scenarios.aps_plan.schema import APS_PLAN_DIFF

    # the plan job never ran here: the schema comes from the declaration
    visit(page, dagster_ui, asset_route("aps_plan", "aps_plan_diff"))
    expect_visible(page, "Columns")
    for column in APS_PLAN_DIFF.columns[:3]:
        expect_visible(page, column.name, exact=True)
        expect_visible(page, APS_PLAN_DIFF.description_of(column.name))
    page.screenshot(path=SCREENSHOTS / "asset-column-schema.png", full_page=True)


def test_a_daily_load_shows_its_freshness(page: Page, dagster_ui: DagsterUI) -> None:
    route = f"{asset_route('aps_input', 'aps_input_wip', 'load')}?view=checks"
    visit(page, dagster_ui, route)
    entry = page.get_by_title("freshness_check", exact=True).filter(visible=True).first
    expect(entry).to_be_visible()
    entry.click()
    # the demo days are long past: yesterday is not loaded, and the check says so
    expect_visible(page, f"We expected partition {dagster_ui.freshness_expected} to have arrived")


# -- jobs, automation, runs -----------------------------------------------------------


def test_job_page_shows_the_daily_job(page: Page, dagster_ui: DagsterUI) -> None:
    job = dagster_ui.defs.resolve_job_def(JOB)
    visit(page, dagster_ui, f"/locations/{LOCATION}/jobs/{JOB}")
    expect_visible(page, job.description or JOB, "Partitions")
    expect(page.get_by_text(JOB, exact=True).filter(visible=True).first).to_be_visible()
    # The schedule and the source-change sensor that target the job are linked from its
    # header.
    page.get_by_text("2 schedules/sensors").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(SCHEDULE)
    expect(dialog).to_contain_text(CHANGE_SENSOR)


def test_schedule_page_shows_the_daily_schedule(page: Page, dagster_ui: DagsterUI) -> None:
    schedule = dagster_ui.defs.resolve_schedule_def(SCHEDULE)
    visit(page, dagster_ui, f"/locations/{LOCATION}/schedules/{SCHEDULE}")
    expect_visible(
        page,
        SCHEDULE,
        f"({schedule.cron_schedule})",
        schedule.execution_timezone or "UTC",
        "Schedule in",
    )
    expect(page.get_by_role("link", name=JOB, exact=True).first).to_be_visible()


def test_sensor_page_shows_the_plan_run_sensor(page: Page, dagster_ui: DagsterUI) -> None:
    sensor = dagster_ui.defs.resolve_sensor_def(SENSOR)
    visit(page, dagster_ui, f"/locations/{LOCATION}/sensors/{SENSOR}")
    expect_visible(page, SENSOR, "Sensor in", sensor.description or SENSOR)
    expect(page.get_by_role("link", name="aps_plan_snapshot", exact=True).first).to_be_visible()


def test_automation_lists_the_schedule_and_the_sensor(page: Page, dagster_ui: DagsterUI) -> None:
    visit(page, dagster_ui, "/automation")
    expect_visible(page, SCHEDULE, SENSOR, CHANGE_SENSOR, exact=True)


def test_sensor_page_shows_the_source_change_sensor(page: Page, dagster_ui: DagsterUI) -> None:
    sensor = dagster_ui.defs.resolve_sensor_def(CHANGE_SENSOR)
    visit(page, dagster_ui, f"/locations/{LOCATION}/sensors/{CHANGE_SENSOR}")
    expect_visible(page, CHANGE_SENSOR, "Sensor in", "Running")
    expect(page.get_by_text((sensor.description or "")[:40]).first).to_be_visible()


def test_runs_list_the_daily_run(page: Page, dagster_ui: DagsterUI) -> None:
    visit(page, dagster_ui, "/runs")
    expect_visible(page, dagster_ui.run_id[:8], f"partition: {PARTITION}", "Success")


def test_launchpad_scaffolds_the_local_resources(page: Page, dagster_ui: DagsterUI) -> None:
    visit(page, dagster_ui, f"/locations/{LOCATION}/jobs/{JOB}/playground")
    expect_visible(page, "No errors", "No missing config")
    # The scaffolded config shows the embedded default's lake under APS_LOCAL_HOME.
    expect(page.locator(".CodeMirror-code")).to_contain_text(dagster_ui.lake_root)
    expect(page.get_by_role("button", name="Launch Run")).to_be_visible()


def test_backfill_dialog_opens_for_the_daily_job(page: Page, dagster_ui: DagsterUI) -> None:
    visit(page, dagster_ui, f"/locations/{LOCATION}/jobs/{JOB}/partitions")
    expect_visible(page, "Total partitions", "Backfill history")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Launch runs to materialize")
    expect(dialog).to_contain_text("Partition selection")
    # Left open for the screenshot; nothing is launched.
    expect(dialog.get_by_role("button", name="Launch backfill")).to_be_visible()
