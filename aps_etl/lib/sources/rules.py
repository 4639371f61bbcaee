"""Source-side validation: the declared rules of an ExtractSpec checked on every new snapshot.

Three kinds, each counted with a few sample rows: a null where the spec does not declare
the column `nullable`; NaN or an infinity in a floating column (PostgreSQL `numeric`
holds both, and they survive the cast to double precision); and the spec's `rules` (the
source's CHECK constraints, as Polars expressions; a rule that is null on a row, because
a column it reads is null there, is not a violation: nullability is checked on its own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from aps_etl.lib.sources.specs import ExtractSpec

SAMPLES = 5


@dataclass(frozen=True)
class RuleViolation:
    rule: str
    count: int
    samples: list[dict[str, Any]]


def _checks(spec: ExtractSpec) -> dict[str, pl.Expr]:
    checks: dict[str, pl.Expr] = {}
    for name, dtype in spec.columns.items():
        if name not in spec.nullable:
            checks[f"{name} is not null"] = pl.col(name).is_not_null()
        if dtype in (pl.Float64, pl.Float32):
            # null is nullability's business; NaN and +-inf are never valid numbers here
            checks[f"{name} is finite"] = pl.col(name).is_finite().fill_null(True)
    for name, rule in spec.rules.items():
        checks[name] = rule.fill_null(True)
    return checks


def violations(spec: ExtractSpec, frame: pl.DataFrame) -> list[RuleViolation]:
    """Every declared rule that some row breaks, with its count and sample rows."""
    checks = _checks(spec)
    if frame.is_empty() or not checks:
        return []
    names = list(checks)
    passed = frame.select([expr.alias(f"_ok{i}") for i, expr in enumerate(checks.values())])
    counts = passed.select(
        [(~pl.col(f"_ok{i}")).sum().alias(f"_ok{i}") for i in range(len(names))]
    ).row(0)
    found = []
    for i, (name, count) in enumerate(zip(names, counts, strict=True)):
        if count:
            bad = frame.filter(~passed[f"_ok{i}"]).head(SAMPLES)
            samples = json.loads(json.dumps(bad.to_dicts(), default=str))
            found.append(RuleViolation(name, int(count), samples))
    return found


def describe(found: list[RuleViolation]) -> str:
    return "; ".join(f"{v.rule}: {v.count:,} row(s) violate it" for v in found)
