"""A primary that goes away mid-run: fast 503s, recovery without a restart, no SQLite switch.

On a throwaway cluster of our own (tests/pgcluster.py): the machine's shared server is
never stopped by a test.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from src.api.dependencies import DatabaseDep
from src.application import create_app
from src.config.settings import LIBPQ_SOURCE, Settings
from tests.conftest import make_settings, wait_ready, wait_until
from tests.pgcluster import PgCluster


def _app_with_probe(settings: Settings) -> FastAPI:
    """The app, plus `/probe/db`: one read through the request path's database layer."""
    app = create_app(settings)

    @app.get("/probe/db")
    async def probe(db: DatabaseDep) -> dict[str, int]:
        one = await db.read(lambda c: c.execute(text("select 1")).scalar_one())
        return {"one": int(one)}

    return app


def test_postgres_stopped_mid_run_gives_fast_503_and_recovers(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    database = f"todo_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stoppable_cluster.admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    settings = make_settings(
        tmp_path, database_url=stoppable_cluster.url(database), database_connect_timeout=2
    )
    app = _app_with_probe(settings)

    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_ready(client)
            assert client.get("/probe/db").json() == {"one": 1}

            stoppable_cluster.stop("fast")
            started = time.monotonic()
            first = client.get("/probe/db")
            assert time.monotonic() - started < settings.database_connect_timeout + 1
            assert first.status_code == 503
            assert first.json()["code"] == "DATABASE_UNAVAILABLE"
            assert int(first.headers["Retry-After"]) > 0

            # A probe on a fresh connection confirms the outage; from then on requests
            # fail fast without touching the network.
            assert wait_until(
                lambda: (
                    client.get("/config/database").json()["connection_state"]
                    == "PRIMARY_UNAVAILABLE"
                ),
                timeout=10,
            )
            for _ in range(5):
                started = time.monotonic()
                again = client.get("/probe/db")
                assert again.status_code == 503
                assert time.monotonic() - started < 0.5
            report = client.get("/config/database").json()
            assert report["fallback_active"] is False  # no mid-run switch to SQLite
            assert report["last_error_kind"] == "unreachable"
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            assert client.get("/ready").status_code == 503

            stoppable_cluster.start()
            assert wait_until(lambda: client.get("/probe/db").status_code == 200, timeout=30)
            assert client.get("/config/database").json()["connection_state"] == (
                "PRIMARY_CONNECTED"
            )
            assert client.get("/ready").status_code == 200
    finally:
        stoppable_cluster.start()


def test_a_request_failure_names_the_settings_the_url_came_from(
    tmp_path: Path, stoppable_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Configured with libpq's PG* variables, a request's failure sends the operator to
    them, not to a DATABASE_URL they never set."""
    database = stoppable_cluster.new_database("todo_outage_pg")
    settings = make_settings(
        tmp_path,
        pghost="127.0.0.1",
        pgport=str(stoppable_cluster.port),
        pguser="postgres",
        pgdatabase=database,
        database_connect_timeout=2,
    )
    app = _app_with_probe(settings)

    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert wait_ready(client)["primary_source"] == LIBPQ_SOURCE
            stoppable_cluster.stop("fast")
            caplog.clear()
            assert client.get("/probe/db").status_code == 503
        failed = [r.getMessage() for r in caplog.records if "request failed" in r.getMessage()]
        assert failed, caplog.text
        assert all("PGHOST and PGPORT" in line for line in failed), failed
        assert not any("DATABASE_URL" in line for line in failed), failed
    finally:
        stoppable_cluster.start()
