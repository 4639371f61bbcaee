"""The HTTP session of every Trino client (the resource, infra/stack, the tests): light on
purpose, so `infra/stack` can use it without importing Dagster."""

from __future__ import annotations

from typing import Any


def http_session(sslrootcert: str | None) -> Any:
    """The requests session the Trino client uses: the server's certificate checked against
    `sslrootcert` when given. requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on many
    machines and images) override a session's own CA file, which would quietly verify
    Trino against the system's CAs instead: here the CA file given wins."""
    import requests

    class PinnedSession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    session = PinnedSession() if sslrootcert else requests.Session()
    session.verify = sslrootcert or True
    return session
