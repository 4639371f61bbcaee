"""The results table: Markdown and JSON, with the machine, the scale and every ratio."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from benchmarks.peers import PEER_LABELS, PEERS
from benchmarks.targets import comparisons, evaluate_targets

DATASET_TITLES = {
    "day": "day of {rows} source rows (scenario 1's daily job `aps_daily`)",
    "day_large": "day of {rows} source rows (scenario 1's daily job `aps_daily`)",
    "plan": "plan snapshot of {rows} rows (`aps_plan_snapshot`, a pass-through)",
    "tiny": "day of {rows} source rows: what a run of `aps_daily` costs whatever the data",
}
STAGES_OURS = ("extract", "lake_write", "transform", "load", "orchestration", "startup")
STAGES_PEER = ("extract", "lake_write", "load", "startup/other")


def _rows(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n:,}"


def _s(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def build(
    scale: str,
    rows: dict[str, int],
    machine: dict[str, Any],
    servers: dict[str, str],
    datasets: dict[str, Any],
    measurements: list[dict[str, Any]],
    context: dict[str, Any],
) -> dict[str, Any]:
    ratios = comparisons(measurements)
    return {
        "scale": scale,
        "rows": rows,
        "machine": machine,
        "servers": servers,
        "context": context,
        "datasets": datasets,
        "measurements": measurements,
        "comparisons": ratios,
        "targets": evaluate_targets(scale, measurements, ratios),
    }


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    p = m["packages"]
    servers = ", ".join(f"{k} {v}" for k, v in results["servers"].items())
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gb']:.0f} GB RAM, {m['os']} "
        f"(kernel {m['kernel']}), Python {m['python']}; dagster {p['dagster']}, "
        f"polars {p['polars']}, duckdb {p['duckdb']}, pyarrow {p['pyarrow']}, "
        f"adbc-driver-postgresql {p['adbc-driver-postgresql']}, "
        f"arrow-odbc {p.get('arrow-odbc', '?')}, sling {p.get('sling-linux-amd64', '?')}, "
        f"dlt {p['dlt']}, "
        f"pandas {p['pandas']}, SQLAlchemy {p['sqlalchemy']}; {servers}"
    )


def side_by_side(results: dict[str, Any]) -> list[str]:
    """One row per case: our wall, then each peer's wall and our ratio to it."""
    measurements = results["measurements"]
    lines = [
        "| case | source rows | aps-etl | " + " | ".join(PEER_LABELS[p] for p in PEERS) + " |",
        "|---|---:|---:|" + "---:|" * len(PEERS),
    ]
    for ours in (m for m in measurements if m["kind"] == "ours"):
        cells = []
        for peer in PEERS:
            r = next(
                (
                    c
                    for c in results["comparisons"]
                    if c["case"] == ours["key"] and c["peer"] == peer
                ),
                None,
            )
            if r is None:
                cells.append("–")
            elif r["peer_wall_s"] is None:
                cells.append(f"failed ({(r['peer_error'] or '')[:40]})")
            else:
                cells.append(f"{_s(r['peer_wall_s'])} s (**{r['ratio']:.1f}x**)")
        ours_cell = (
            f"{_s(ours['wall_s'])} s (run {_s(ours['run_s'])} s)"
            if ours.get("wall_s")
            else f"failed ({(ours.get('error') or '')[:60]})"
        )
        lines.append(
            f"| {ours['label']} | {_rows(ours['rows'])} | {ours_cell} | " + " | ".join(cells) + " |"
        )
    return lines


STAGES_ENGINE = ("extract", "lake_write", "load", "startup/other")


def engine_lines(results: dict[str, Any]) -> list[str]:
    """test_source_engines.py: the day's reads from PostgreSQL and from MariaDB, stage by
    stage, with the extract's own rate (rows / extract seconds)."""
    measured = [m for m in results["measurements"] if m["kind"] == "engine"]
    if not measured:
        return []
    lines = [
        "",
        "## The day's source reads: PostgreSQL beside MariaDB (seconds)",
        "",
        "Every SELECT of the day (the job's own, in each engine's dialect), one after the "
        "other on one connection, each tool in a process of its own. *extract*: the rows "
        "read into memory (ours: `SourceDatabase.extract`, typed as declared); *Parquet*: "
        "written to a local file (zstd); Sling streams into the target PostgreSQL "
        "(*load*). " + (results["context"].get("mariadb_database") or ""),
        "",
        "| tool | server | source rows | process | extract | Parquet | load "
        "| startup/other | rows/s (process) | rows/s (extract) | peak RSS MiB | rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measured:
        if not m.get("wall_s"):
            lines.append(
                f"| {m['label']} | {m['server']} | {_rows(m['rows'])} | "
                f"failed: {(m.get('error') or '')[:200]} |"
            )
            continue
        st = m["stages_s"]
        extract = st.get("extract") or 0.0
        rate = f"{round(m['rows'] / extract):,}" if extract else "–"
        lines.append(
            f"| {m['label']} | {m['server']} | {_rows(m['rows'])} | {_s(m['wall_s'])} | "
            + " | ".join(_s(st.get(k)) if st.get(k) else "–" for k in STAGES_ENGINE)
            + f" | {m['rows_per_s']:,} | {rate} | {_mb(m['peak_rss_mb'])} "
            f"| {len(m['rounds'])} |"
        )
    return lines


def to_markdown(results: dict[str, Any]) -> str:
    ctx = results["context"]
    rows = results["rows"]
    lines = [
        f"# aps-etl benchmark: {results['scale']} scale, {ctx['started_utc']}",
        "",
        f"**Machine**: {machine_line(results)}.",
        "",
        f"**Scale**: a day of {_rows(rows['day'])}"
        + (f" and of {_rows(rows['day_large'])}" if "day_large" in rows else "")
        + f" source rows, a plan snapshot of {_rows(rows['plan'])} rows. Load average "
        f"(1/5/15 min) at start {ctx['load_start']}, at end {ctx['load_end']}; other busy "
        "processes at start: "
        f"{', '.join(ctx['other_work_start']) or 'none'}. Command: `{ctx['command']}`; "
        f"{ctx['duration_min']:.0f} min in all.",
        "",
        "Every time is the wall time of one process from its spawn to the end of its work "
        "(interpreter start, imports and the work), the median of the rounds. *run* is the "
        "Dagster run alone, as a run worker executes it (`execute_job`, in-process executor, "
        "the environment's Dagster instance: PostgreSQL on the dev stack, SQLite on the "
        "embedded default); *startup* is the rest of our process (Python, imports, the "
        "instance). Peak RSS is the process's own high-water mark (VmHWM). Ratios are peer "
        "time / our time, both whole processes, on the same rows of the same tables on the "
        "same PostgreSQL server: above 1, aps-etl is faster. Python bytecode was compiled "
        f"before measuring ({ctx.get('bytecode_compile_s', 0):.0f} s; this machine sets "
        "PYTHONDONTWRITEBYTECODE=1, which would make every process compile its imports).",
        "",
        "## Side by side",
        "",
        *side_by_side(results),
        "",
        "## Our cases, stage by stage (seconds)",
        "",
        "| case | source rows | process | run | extract | lake write | transform | load "
        "| orchestration | startup | rows/s | peak RSS MiB | peak in step | rounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for m in (m for m in results["measurements"] if m["kind"] == "ours"):
        if not m.get("wall_s"):
            lines.append(f"| {m['label']} | {_rows(m['rows'])} | failed: {m.get('error')} |")
            continue
        st = m["stages_s"]
        lines.append(
            f"| {m['label']} | {_rows(m['rows'])} | {_s(m['wall_s'])} | {_s(m['run_s'])} | "
            + " | ".join(_s(st.get(k)) for k in STAGES_OURS)
            + f" | {m['rows_per_s']:,} | {_mb(m['peak_rss_mb'])} | {m.get('peak_step') or '–'} "
            f"| {len(m['rounds'])} |"
        )
    lines += [
        "",
        "## Peers, stage by stage (seconds)",
        "",
        "| data set | server | tool | source rows | process | extract | lake write | load "
        "| startup/other | rows/s | peak RSS MiB | rounds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in (m for m in results["measurements"] if m["kind"] == "peer"):
        if not m.get("wall_s"):
            lines.append(
                f"| {m['dataset']} | {m['server']} | {m['label']} | {_rows(m['rows'])} | "
                f"failed: {(m.get('error') or '')[:200]} |"
            )
            continue
        st = m["stages_s"]
        lines.append(
            f"| {m['dataset']} | {m['server']} | {m['label']} | {_rows(m['rows'])} | "
            f"{_s(m['wall_s'])} | "
            + " | ".join(_s(st.get(k)) for k in STAGES_PEER)
            + f" | {m['rows_per_s']:,} | {_mb(m['peak_rss_mb'])} | {len(m['rounds'])} |"
        )
    lines += engine_lines(results)
    loads = [m for m in results["measurements"] if m["kind"] == "ours" and m.get("load_detail")]
    if loads:
        lines += ["", "## The loads as the loader timed them", ""]
        lines += ["| case | largest table | rows | load s | rows/s |", "|---|---|---:|---:|---:|"]
        for m in loads:
            d = m["load_detail"]
            name = max(d["tables"], key=lambda t: d["tables"][t]["rows"] or 0)
            lines.append(
                f"| {m['label']} | {name} | {d['largest_rows']:,} | {_s(d['largest_load_s'])} "
                f"| {d['largest_rows_per_s'] or 0:,} |"
            )
    living = [m for m in results["measurements"] if m["kind"] == "living"]
    if living:
        lines += ["", "## A living source (seconds, per source table)", ""]
        lines += ["| case | source rows of the day | total | per table |", "|---|---:|---:|---|"]
        for m in living:
            if not m.get("wall_s"):
                lines.append(f"| {m['label']} | {_rows(m['rows'])} | failed: {m.get('error')} |")
                continue
            per = ", ".join(
                f"{k} {_s(v)}" for k, v in m["stages_s"].items() if k != "startup/other"
            )
            lines.append(f"| {m['label']} | {_rows(m['rows'])} | {_s(m['wall_s'])} | {per} |")
    launched = [m for m in results["measurements"] if m["kind"] == "launched"]
    if launched:
        lines += ["", "## Launched through the queue and the daemon (median round, s)", ""]
        lines += [
            "| case | source rows | queued -> finished | queue | worker start | run |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for m in launched:
            rounds = sorted(m["rounds"], key=lambda r: r["wall_s"])
            if not rounds:
                lines.append(f"| {m['label']} | {_rows(m['rows'])} | failed: {m.get('error')} |")
                continue
            median = rounds[(len(rounds) - 1) // 2]
            st = median["result"]["stages"]
            lines.append(
                f"| {m['label']} | {_rows(m['rows'])} | {_s(median['wall_s'])} | "
                f"{_s(st['queue'])} | {_s(st['worker start'])} | {_s(st['run'])} |"
            )
    swaps = [m for m in results["measurements"] if m["kind"] == "swap"]
    if swaps:
        lines += ["", "## Replacing a day under a long reader (median round)", ""]
        lines += [
            "| strategy | swap s | other readers' longest wait s | day seen not whole |",
            "|---|---:|---:|---|",
        ]
        for m in swaps:
            rounds = [r["result"] for r in m["rounds"]]
            if not rounds:
                lines.append(f"| {m['tool']} | failed: {m.get('error')} | | |")
                continue
            swap_s = sorted(r["swap_s"] for r in rounds)[(len(rounds) - 1) // 2]
            wait = max(r["other_reader_wait_max_s"] for r in rounds)
            seen = sorted({c for r in rounds for c in r["day_seen_other_than_whole"]})
            lines.append(
                f"| {m['tool']} | {swap_s:.2f} | {wait:.2f} | "
                f"{'rows: ' + ', '.join(map(str, seen)) if seen else 'never'} |"
            )
    lines += _merge_lines(results)
    if results["targets"]:
        lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for t in results["targets"]:
            met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
            lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    lines += ["", "## Data sets", ""]
    for role, per_server in results["datasets"].items():
        for server, ds in per_server.items():
            reads = ", ".join(f"{k} {v:,}" for k, v in ds["reads"].items())
            lines.append(
                f"- {role} on {server}: {DATASET_TITLES[role].format(rows=_rows(ds['rows']))}, "
                f"partition `{ds['partition']}`; {ds['rows']:,} rows read ({reads})"
                + (
                    f"; seeded {ds['seed_rows']:,} rows from {ds['lots']:,} lots"
                    if ds["lots"]
                    else ""
                )  # fmt: skip
            )
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{results['scale']}"
    latest = "latest" if results["scale"] == "full" else f"latest-{results['scale']}"
    text = to_markdown(results)
    blob = json.dumps(results, indent=1, default=str)
    paths = []
    for base in (name, latest):
        (directory / f"{base}.md").write_text(text)
        (directory / f"{base}.json").write_text(blob)
        paths += [directory / f"{base}.md", directory / f"{base}.json"]
    return paths


def _merge_lines(results: dict[str, Any]) -> list[str]:
    """benchmarks/test_merge.py: a dimension with 1% changed, merged three ways."""
    merges = [m for m in results["measurements"] if m["kind"] == "merge"]
    if not merges:
        return []
    lines = ["", "## Merging a dimension with 1% changed (median round)", ""]
    lines += ["| way | rows | s | changed |", "|---|---:|---:|---|"]
    for m in merges:
        rounds = sorted(m["rounds"], key=lambda r: r["wall_s"])
        if not rounds:
            lines.append(f"| {m['tool']} | {_rows(m['rows'])} | failed: {m.get('error')} | |")
            continue
        median = rounds[(len(rounds) - 1) // 2]
        changed = ", ".join(f"{k} {v:,}" for k, v in median["result"].items()) or "all rows"
        _, marker, settings = m["label"].partition(" (Trino writes: ")
        way = f"{m['tool']} ({settings}" if marker else m["tool"]
        lines.append(f"| {way} | {_rows(m['rows'])} | {_s(median['wall_s'])} | {changed} |")
    return lines
