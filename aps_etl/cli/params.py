"""What the `aps-etl` commands share: their parameter types, the `--env` option, and the
refusal of bad input (one line naming the cause, exit status 2: main.py prints it).

Nothing here imports Dagster or the definitions at import time: `aps-etl --help` and a
refused option stay fast; what a check needs is imported when it runs."""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

# seed-source fills a development source only
SEED_ENVIRONMENTS = ("local", "dev")

F = TypeVar("F", bound=Callable[..., Any])


class Refused(click.UsageError):
    """Input a command refuses on the project's terms (a day outside the plant's history,
    an unknown APS_ENV, a bad setting): main.py prints the cause as one line, exit status 2.
    Click's own usage errors (an unknown option, a malformed value) keep click's format."""


def check_partition(text: str) -> str:
    """A daily partition key the job can run: a real date, from the plant's first day
    (APS_FIRST_DAY) to the last complete business day."""
    from aps_etl.lib.business_days import last_complete_day, parse_partition_key
    from aps_etl.lib.partitions import FIRST_DAY_VARIABLE, first_day

    day = parse_partition_key(text)
    if day < first_day():
        raise Refused(
            f"{text} is before the plant's first business day {first_day()} "
            f"({FIRST_DAY_VARIABLE}); set it earlier if the plant's history starts earlier"
        )
    if day > last_complete_day():
        raise Refused(
            f"{text} has not ended yet in the plant's time zone: the last complete "
            f"business day is {last_complete_day()}"
        )
    return text


class PartitionKey(click.ParamType):
    """A daily partition key, checked by check_partition: a refusal (Refused, or the
    PartitionKeyError of a malformed key) is the project's one line, not click's usage."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return check_partition(str(value))


class IsoDate(click.DateTime):
    """A calendar date written YYYY-MM-DD, as a datetime.date."""

    def __init__(self) -> None:
        super().__init__(formats=["%Y-%m-%d"])

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            self.fail(f"not an ISO date (YYYY-MM-DD): {value!r}", param, ctx)


class Choice(click.Choice):
    """click.Choice whose refusal reads as before: `invalid choice: 'prod' (choose from ...)`."""

    def get_invalid_choice_message(self, value: Any, ctx: click.Context | None) -> str:
        offered = ", ".join(repr(choice) for choice in self.choices)
        return f"invalid choice: {value!r} (choose from {offered})"


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `30m` or `2h`."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = 0
    if not (0 < seconds < math.inf):  # nan and inf would never time out
        raise ValueError(f"expected a duration like 5400, 90m or 2h: {text!r}")
    return seconds


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DefaultOption(click.Option):
    """Shows its default in --help as `(default: 3)`, unless its help already says it or
    it has none (argparse's ArgumentDefaultsHelpFormatter, which the help texts keep)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.shows_default = kwargs.get("default") not in (None, False)
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None or not self.shows_default or self.is_flag or "default" in record[1]:
            return record
        names, text = record
        return names, f"{text} (default: {self.get_default(ctx, call=True)})"


def option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """click.option showing its default in --help."""
    return click.option(*names, cls=DefaultOption, **kwargs)


class Environment(Choice):
    """`--env`'s choices: the environments of aps_etl/env/settings.py, the one list, read
    when first needed (settings imports Dagster and the resources, seconds that
    `aps-etl --help` and the commands' refusals need not pay; a command's --help does)."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from aps_etl.env.settings import ENVIRONMENTS

        return tuple(ENVIRONMENTS)

    @choices.setter
    def choices(self, value: object) -> None:  # Choice.__init__ sets it: the list is settings'
        pass


def env_option(seed: bool = False) -> Callable[[F], F]:
    """`--env`, default $APS_ENV or local (`seed`: a development source, never prod). Not
    click's envvar: an unknown APS_ENV is refused by name when the command resolves it
    (environment()), as a setting, not as a malformed option."""
    if seed:
        return click.option(
            "--env", type=Choice(SEED_ENVIRONMENTS), help="default: $APS_ENV or local (never prod)"
        )
    return click.option("--env", type=Environment(), help="default: $APS_ENV or local")


def environment(text: str | None) -> str:
    """The environment asked for, else $APS_ENV, else local; an unknown one refused."""
    from aps_etl.env.settings import ENVIRONMENTS

    env = text or os.environ.get("APS_ENV", "local")
    if env not in ENVIRONMENTS:
        raise Refused(f"unknown environment {env!r} (APS_ENV); choose one of {ENVIRONMENTS}")
    return env


def use_environment(text: str | None) -> str:
    """environment(), also set as APS_ENV in this process. It must stay in os.environ:
    runner.dagster_instance() picks the instance's home by it, and every process this
    command starts (the backfill's dagster-daemon, its code server, their run workers) and
    `build_defs()`/`resources_for()` called without an environment read it."""
    env = environment(text)
    os.environ["APS_ENV"] = env
    return env


def resolved(env: str) -> dict:
    """The environment's source, lake and target, configuration resolved (EnvVars read)."""
    from aps_etl.env.settings import resources_for

    resources = resources_for(env)
    found = {name: resources[name].process_config_and_initialize() for name in ("source", "lake")}
    found["target"] = resources["loader"].target.process_config_and_initialize()
    return found
