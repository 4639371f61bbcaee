"""What every asset of the code location says about itself in the UI beyond its data:
who owns it (APS_ASSET_OWNERS), which PRD scenario and stage it belongs to (tags, for
filtering the asset catalog), and where its code is (Dagster's code references)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg

from aps_etl.lib.tags import SCENARIO_TAG, STAGE_TAG

# Code references are "beta" in Dagster 1.13 and the documented way to link assets to code.
warnings.filterwarnings("ignore", message=".*(with_source_code_references|CodeReference).*beta")

OWNERS_VARIABLE = "APS_ASSET_OWNERS"
DEFAULT_OWNERS = ("team:aps-data-engineering",)


def owners() -> list[str]:
    """APS_ASSET_OWNERS: comma-separated emails or `team:` names."""
    raw = os.environ.get(OWNERS_VARIABLE, "")
    found = [o.strip() for o in raw.split(",") if o.strip()] or list(DEFAULT_OWNERS)
    bad = [o for o in found if not (o.startswith("team:") or "@" in o)]
    if bad:
        from aps_etl.lib.errors import ConfigurationError

        raise ConfigurationError(
            f"{OWNERS_VARIABLE}: {', '.join(bad)}: an owner is an email or a team:<name>"
        )
    return found


def with_attributes(assets: Iterable[Any], scenario_of: dict[str, str]) -> Sequence[Any]:
    """The assets with owners, scenario and stage tags, and code references.
    `scenario_of`: lake namespace -> PRD section ("10.1")."""
    people = owners()

    def attributes(spec: dg.AssetSpec) -> dg.AssetSpec:
        stage, namespace = spec.key.path[0], spec.key.path[1]
        tags = {**spec.tags, STAGE_TAG: stage}
        if namespace in scenario_of:
            tags[SCENARIO_TAG] = scenario_of[namespace].replace(".", "_")
        return spec.replace_attributes(owners=people, tags=tags)

    return dg.with_source_code_references(dg.map_asset_specs(attributes, list(assets)))
