"""A primary that hangs after connecting: every request ends within the timeouts."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from src.api.dependencies import DatabaseDep
from src.application import create_app
from tests.conftest import make_settings, wait_ready, wait_until
from tests.netfaults import Forwarder


def test_silent_primary_gives_503_within_the_timeouts_then_recovers(
    tmp_path: Path, pg_database: str
) -> None:
    proxy = Forwarder(("127.0.0.1", 5432))
    try:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{pg_database}"
        settings = make_settings(
            tmp_path, database_url=url, database_connect_timeout=1, database_statement_timeout=1
        )
        app = create_app(settings)

        @app.get("/probe/db")
        async def probe(db: DatabaseDep) -> dict[str, int]:
            one = await db.read(lambda c: c.execute(text("select 1")).scalar_one())
            return {"one": int(one)}

        with TestClient(app, raise_server_exceptions=False) as client:
            wait_ready(client)
            assert client.get("/probe/db").status_code == 200

            proxy.mode = "silent"
            started = time.monotonic()
            response = client.get("/probe/db")
            elapsed = time.monotonic() - started
            # This request ran out of time: its own answer, within the deadline (1 s).
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "DATABASE_TIMEOUT"
            assert elapsed < 1 + 1.5, elapsed
            # A probe on a fresh connection (libpq's connect timeout: >= 2 s) then
            # confirms the server is silent for everyone.
            assert wait_until(
                lambda: (
                    client.get("/config/database").json()["connection_state"]
                    == "PRIMARY_UNAVAILABLE"
                ),
                timeout=6,
            )

            started = time.monotonic()
            assert client.get("/probe/db").status_code == 503
            assert time.monotonic() - started < 0.5

            proxy.mode = "forward"
            assert wait_until(lambda: client.get("/probe/db").status_code == 200, timeout=20)
    finally:
        proxy.close()
