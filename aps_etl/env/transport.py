"""Production refuses, at start, a setting that would send rows or a secret across the
network unencrypted: each is named with its fix, and nothing is read or written before.

What is refused with APS_ENV=prod:

| connection                     | refused                                            |
| source / target PostgreSQL     | APS_<ROLE>_PG_SSLMODE (or APS_PG_SSLMODE) unset,   |
|                                | disable, allow or prefer (libpq's default, prefer, |
|                                | falls back to plain text without a word)           |
| Dagster's storage (PostgreSQL) | APS_DAGSTER_PG_SSLMODE the same                    |
| a source on another engine     | APS_SOURCE_TLS=disable                             |
| the lake (S3)                  | an http:// APS_S3_ENDPOINT, unless                 |
|                                | APS_S3_ALLOW_HTTP=true says the network is private |
| alert email                    | an SMTP login (APS_ALERT_SMTP_USER) without        |
|                                | APS_ALERT_SMTP_STARTTLS=true                       |

Trino's own rule (a password only over https) is checked where its resource is built
(settings._trino). dev and local are left as they are: the dev stack is TLS throughout
already, the embedded default talks to nothing on a network.
"""

from __future__ import annotations

from collections.abc import Mapping

from aps_etl.lib.errors import ConfigurationError

ENCRYPTED_SSLMODES = ("require", "verify-ca", "verify-full")
TRUE = ("1", "true", "yes", "on")


def _postgres(env: Mapping[str, str], role: str, shared: bool = True) -> list[str]:
    def setting(name: str) -> str | None:
        own = env.get(f"APS_{role}_PG_{name}")
        return own or (env.get(f"APS_PG_{name}") if shared else None)

    if not setting("HOST"):
        return []  # not this container's connection
    mode = setting("SSLMODE")
    if mode in ENCRYPTED_SSLMODES:
        return []
    name = f"APS_{role}_PG_SSLMODE" + (" (or APS_PG_SSLMODE)" if shared else "")
    found = f"is {mode}" if mode else "is not set (libpq then prefers TLS but goes on without)"
    return [f"{name} {found}: set verify-full (and its _SSLROOTCERT) or require"]


def plaintext_settings(env: Mapping[str, str]) -> list[str]:
    """Each setting of `env` that would cross the network in the clear, with its fix."""
    found: list[str] = []
    engine = (env.get("APS_SOURCE_ENGINE") or "postgresql").strip().lower()
    if engine == "postgresql":
        found += _postgres(env, "SOURCE")
    elif (env.get("APS_SOURCE_TLS") or "").strip() == "disable":
        found.append("APS_SOURCE_TLS is disable: set verify-full (with APS_SOURCE_SSLROOTCERT)")
    found += _postgres(env, "TARGET")
    found += _postgres(env, "DAGSTER", shared=False)
    endpoint = (env.get("APS_S3_ENDPOINT") or "").strip()
    allowed = (env.get("APS_S3_ALLOW_HTTP") or "").strip().lower() in TRUE
    if endpoint.lower().startswith("http://") and not allowed:
        found.append(
            f"APS_S3_ENDPOINT is {endpoint}: use https://, or set APS_S3_ALLOW_HTTP=true "
            "where the store is reached on a private network only"
        )
    starttls = (env.get("APS_ALERT_SMTP_STARTTLS") or "").strip().lower() in TRUE
    if env.get("APS_ALERT_SMTP_HOST") and env.get("APS_ALERT_SMTP_USER") and not starttls:
        found.append(
            "APS_ALERT_SMTP_USER is set without APS_ALERT_SMTP_STARTTLS=true: the SMTP "
            "password would cross the network in the clear"
        )
    return found


def refuse_plaintext_in_prod(env: Mapping[str, str]) -> None:
    """Raises ConfigurationError naming every plain-text setting when APS_ENV=prod."""
    if env.get("APS_ENV") != "prod":
        return
    found = plaintext_settings(env)
    if found:
        raise ConfigurationError(
            "APS_ENV=prod refuses unencrypted connections: " + "; ".join(found)
        )
