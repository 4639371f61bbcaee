"""Run-failure alerts: one sensor tells Slack and/or email about every failed run.

Each channel is switched on by environment variables alone (nothing set: the sensor
exists, sends nothing and says so in its skip reason):

| channel | switched on by            | also needs                                  |
| Slack   | APS_ALERT_SLACK_TOKEN     | APS_ALERT_SLACK_CHANNEL                     |
|         |                           | (APS_ALERT_SLACK_BASE_URL: another API URL) |
| email   | APS_ALERT_SMTP_HOST       | APS_ALERT_EMAIL_FROM, APS_ALERT_EMAIL_TO    |
|         |                           | (APS_ALERT_SMTP_PORT=25, _STARTTLS=false,   |
|         |                           | _USER/_PASSWORD: optional login)            |

APS_DAGSTER_UI_URL, if set, makes the run link absolute. Secrets reach the resource only
through dg.EnvVar, so the UI shows variable names. Messages go through `redact`: no
credentials of a URI and no value of an APS_*PASSWORD*/*SECRET*/*TOKEN* variable leave.
A channel that fails does not stop the other; the tick then fails with a safe summary.

Not built on Dagster's factories (dagster.make_email_on_run_failure_sensor,
dagster_slack.make_slack_on_run_failure_sensor): the email one cannot use a relay without
TLS and login, nor send anything but ASCII, and the Slack one takes no API base URL.
aps_etl_tests/unit/test_alerts.py pins each ("why the sensor is not built on ...").
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Any

import dagster as dg

from aps_etl.lib.errors import ConfigurationError
from aps_etl.lib.redaction import redact

SENSOR_NAME = "run_failure_alerts"
RESOURCE_KEY = "alert_settings"
SMTP_TIMEOUT_SECONDS = 15
SLACK_TIMEOUT_SECONDS = 15
# Dagster sets it on a failed run it will run again (run_retries; our CLI follows it too)
WILL_RETRY_TAG = "dagster/will_retry"


class AlertDeliveryError(RuntimeError):
    """At least one configured channel could not be reached; the message is credential-free."""


class AlertSettings(dg.ConfigurableResource):
    """Where failure alerts go. Unset fields switch their channel off."""

    slack_token: str | None = None
    slack_channel: str | None = None
    slack_base_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    email_from: str | None = None
    email_to: list[str] = []
    ui_url: str | None = None

    def problems(self) -> list[str]:
        return _problems(
            self.slack_token, self.slack_channel, self.smtp_host, self.email_from, self.email_to
        )

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_token and self.slack_channel)

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.email_from and self.email_to)

    def secrets(self) -> list[str]:
        return [s for s in (self.slack_token, self.smtp_password) if s]

    def send_slack(self, text: str) -> None:
        # dagster-slack's resource makes the client; imported when a message goes out:
        # every run worker loads this module, slack_sdk costs 0.13 s
        from dagster_slack import SlackResource

        client = SlackResource(token=self.slack_token or "").get_client()
        client.base_url = self.slack_base_url or client.base_url  # another Slack API host
        client.timeout = SLACK_TIMEOUT_SECONDS
        client.chat_postMessage(channel=self.slack_channel or "", text=_slack_escape(text))

    def send_email(self, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.email_from
        message["To"] = ", ".join(self.email_to)
        message["Subject"] = subject
        message.set_content(body)
        # smtp_host is set when email is enabled; "" is smtplib's own default, as None was
        with smtplib.SMTP(
            self.smtp_host or "", self.smtp_port, timeout=SMTP_TIMEOUT_SECONDS
        ) as smtp:
            if self.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.smtp_user:
                smtp.login(self.smtp_user, self.smtp_password or "")
            smtp.send_message(message)


def _problems(
    slack_token: str | None,
    slack_channel: str | None,
    smtp_host: str | None,
    email_from: str | None,
    email_to: Iterable[str] | None,
) -> list[str]:
    """Half-configured channels, named by their environment variables."""
    found = []
    if bool(slack_token) != bool(slack_channel):
        missing = "APS_ALERT_SLACK_CHANNEL" if slack_token else "APS_ALERT_SLACK_TOKEN"
        found.append(f"Slack alerts need {missing}")
    email_parts = {
        "APS_ALERT_SMTP_HOST": smtp_host,
        "APS_ALERT_EMAIL_FROM": email_from,
        "APS_ALERT_EMAIL_TO": list(email_to or []),
    }
    if any(email_parts.values()) and not all(email_parts.values()):
        missing = ", ".join(name for name, value in email_parts.items() if not value)
        found.append(f"email alerts need {missing}")
    return found


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false")


def alert_resources_from_env() -> dict[str, Any]:
    """The sensor's resources from APS_ALERT_* (secrets as dg.EnvVar); half-configured raises."""
    env = os.environ
    to = [a.strip() for a in env.get("APS_ALERT_EMAIL_TO", "").split(",") if a.strip()]
    problems = _problems(
        env.get("APS_ALERT_SLACK_TOKEN"),
        env.get("APS_ALERT_SLACK_CHANNEL"),
        env.get("APS_ALERT_SMTP_HOST"),
        env.get("APS_ALERT_EMAIL_FROM"),
        to,
    )
    if problems:
        raise ConfigurationError("; ".join(problems))
    port = env.get("APS_ALERT_SMTP_PORT") or "25"
    if not port.isdigit():
        raise ConfigurationError("APS_ALERT_SMTP_PORT must be an integer port number")

    def secret(name: str) -> dg.EnvVar | None:
        return dg.EnvVar(name) if env.get(name) else None

    settings = AlertSettings(
        slack_token=secret("APS_ALERT_SLACK_TOKEN"),
        slack_channel=env.get("APS_ALERT_SLACK_CHANNEL") or None,
        slack_base_url=env.get("APS_ALERT_SLACK_BASE_URL") or None,
        smtp_host=env.get("APS_ALERT_SMTP_HOST") or None,
        smtp_port=int(port),
        smtp_starttls=_env_bool("APS_ALERT_SMTP_STARTTLS", False),
        smtp_user=secret("APS_ALERT_SMTP_USER"),
        smtp_password=secret("APS_ALERT_SMTP_PASSWORD"),
        email_from=env.get("APS_ALERT_EMAIL_FROM") or None,
        email_to=to,
        ui_url=env.get("APS_DAGSTER_UI_URL") or None,
    )
    return {RESOURCE_KEY: settings}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _first_line(error: Any) -> str:
    """The first line of a step's own error, under Dagster's step-execution wrapper."""
    if error is None:
        return "(no error recorded)"
    if error.cls_name == "DagsterExecutionStepExecutionError" and error.cause is not None:
        error = error.cause
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    return lines[0] if lines else error.cls_name or "(empty error message)"


def failure_message(context: dg.RunFailureSensorContext, ui_url: str | None) -> tuple[str, str]:
    """(subject, body) of the alert for the run of `context`, not yet redacted."""
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    link = f"{(ui_url or '').rstrip('/')}/runs/{run.run_id}"
    lines = [
        f"Dagster run failed: {run.job_name}",
        f"job: {run.job_name}",
        f"run id: {run.run_id}",
        f"partition: {partition or '(none)'}",
    ]
    step_failures = context.get_step_failure_events()
    if step_failures:
        lines.append("failed steps:")
        for event in step_failures:
            error = getattr(event.event_specific_data, "error", None)
            lines.append(f"- {event.step_key}: {_first_line(error)}")
    else:
        failure = context.failure_event
        error = getattr(failure.event_specific_data, "error", None)
        lines.append(f"failure: {_first_line(error) if error else failure.message}")
    lines.append(f"link: {link}")
    subject = f"[aps-etl] run failed: {run.job_name}" + (f" ({partition})" if partition else "")
    return subject, "\n".join(lines) + "\n"


def deliver(
    settings: AlertSettings, subject: str, body: str, log: Any = None
) -> tuple[list[str], list[str]]:
    """Sends through every configured channel (redacted); returns (sent, failed): a half
    configured channel and a channel that fails are both in `failed`."""
    secrets = settings.secrets()
    subject, body = redact(subject, secrets), redact(body, secrets)
    sent: list[str] = []
    failed = list(settings.problems())
    channels = [
        ("Slack", settings.slack_enabled, lambda: settings.send_slack(body)),
        ("email", settings.email_enabled, lambda: settings.send_email(subject, body)),
    ]
    for channel, enabled, send in channels:
        if not enabled:
            continue
        try:
            send()
        except Exception as exc:  # one channel down must not silence the other
            first = (str(exc).splitlines() or [""])[0]
            failed.append(redact(f"{channel}: {type(exc).__name__}: {first}", secrets))
            if log is not None:
                log.error(f"alert not sent by {failed[-1]}")
        else:
            sent.append(channel)
    return sent, failed


def will_be_run_again(run: dg.DagsterRun) -> bool:
    """Dagster marked the run for a retry and someone will make it: the daemon (a run it
    can launch again from its code location) or the command that ran it in process, still
    alive (aps_etl/cli/run_retry.py). A killed `aps-etl run` retries nothing: alerted."""
    if run.tags.get(WILL_RETRY_TAG) != "true":
        return False
    if run.remote_job_origin is not None:
        return True
    from aps_etl.lib.liveness import Owner, alive

    owner = Owner.from_tags(dict(run.tags))
    return owner is not None and alive(owner) is True


def build_alert_sensor(name: str = SENSOR_NAME) -> dg.SensorDefinition:
    """A run-failure sensor over every job of the code location, on by default."""

    @dg.run_failure_sensor(
        name=name,
        description="Sends each failed run to Slack and/or email, as APS_ALERT_* configure it "
        "(nothing configured: sends nothing).",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext, alert_settings: AlertSettings):
        # as stored now: Dagster tags a run it will retry just after its failure event
        run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
        if will_be_run_again(run):
            # an infrastructure failure Dagster (or the CLI) runs again: the alert comes if
            # the last attempt fails too (its will_retry is false)
            message = f"run {run.run_id} failed and will be run again: no alert yet"
            context.log.info(message)
            return dg.SkipReason(message)
        settings = alert_settings
        problems = settings.problems()
        if not (settings.slack_enabled or settings.email_enabled or problems):
            message = "no alert channel configured (APS_ALERT_SLACK_*, APS_ALERT_SMTP_*): not sent"
            context.log.info(f"run {context.dagster_run.run_id} failed; {message}")
            return dg.SkipReason(message)

        subject, body = failure_message(context, settings.ui_url)
        sent, failed = deliver(settings, subject, body, log=context.log)
        run_id = context.dagster_run.run_id
        if sent:
            context.log.info(f"failure of run {run_id} sent by {', '.join(sent)}")
        if failed:
            raise AlertDeliveryError(f"failure alert for run {run_id}: " + "; ".join(failed))
        return None

    return run_failure_alerts


ALERT_REPEAT_S = 3600


def _alert_key(name: str) -> str:
    return f"aps_etl/alerted/{name}"


def alert_once_an_hour(
    instance: dg.DagsterInstance, name: str, settings: AlertSettings, message: str
) -> bool:
    """Alerts about a failing sensor `name` unless it was alerted within the hour (the
    instance's key-value store remembers when); returns whether it sent."""
    import time

    key = _alert_key(name)
    last = instance.run_storage.get_cursor_values({key}).get(key)
    if last and time.time() - float(last) < ALERT_REPEAT_S:
        return False
    sent, failed = deliver(settings, f"[aps-etl] {name} failing", message + "\n")
    instance.run_storage.set_cursor_values({key: str(time.time())})
    return bool(sent) and not failed


def clear_alert(instance: dg.DagsterInstance, name: str) -> None:
    key = _alert_key(name)
    if instance.run_storage.get_cursor_values({key}).get(key):
        instance.run_storage.set_cursor_values({key: ""})
