"""`aps-etl backfill --url` through an authenticating front (the compose deployment's UI):
the credentials come from the environment, go in a Basic Authorization header, and never
appear in what the command prints; a refusal says which variables to set."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aps_etl.cli.backfill_graphql import call
from aps_etl.cli.backfill_runs import BackfillError

PASSWORD = "s3cret-front"


class Front(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
        ok = self.headers.get("Authorization") == expected
        data = json.dumps({"data": {"version": "1.13"}} if ok else {}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def front() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_front_is_passed_with_the_environments_credentials(
    front: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APS_DAGSTER_PASSWORD", raising=False)
    with pytest.raises(BackfillError, match="HTTP 401 .*APS_DAGSTER_PASSWORD") as refused:
        call(front, "{ version }", {})
    assert PASSWORD not in str(refused.value)
    monkeypatch.setenv("APS_DAGSTER_USER", "ops")
    monkeypatch.setenv("APS_DAGSTER_PASSWORD", PASSWORD)
    assert call(front, "{ version }", {}) == {"version": "1.13"}
