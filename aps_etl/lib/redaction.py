"""The one credential redactor: for error messages, alerts and metadata that may quote a
driver's message, a connection URI or a secret setting."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import quote

# Settings whose values are secrets: APS_* names containing one of these words.
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY")
# scheme://user:password@ or scheme://token@ -> scheme://***@
_URI_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/@]+@")


def secret_settings() -> set[str]:
    """The values of the secret-named APS_* variables of this process."""
    return {
        value
        for name, value in os.environ.items()
        if value
        and name.upper().startswith("APS_")
        and any(w in name.upper() for w in SECRET_WORDS)
    }


def redact(text: str, extra_secrets: Iterable[str | None] = ()) -> str:
    """`text` without URI credentials, without the value of any secret-named APS_* variable
    and without `extra_secrets` (as written and URL-quoted, as a URI would carry them)."""
    secrets = secret_settings()
    for secret in extra_secrets:
        if secret:
            secrets.update({secret, quote(secret, safe="")})
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return _URI_CREDENTIALS.sub(r"\1***@", text)
