"""A primary that goes away mid-run: fast 503s, recovery without a restart, no SQLite switch."""

from __future__ import annotations

import glob
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from src.database.session import EngineDep
from src.main import create_app
from src.services import unit_of_work
from tests.conftest import make_settings, wait_ready, wait_until

CLUSTER_VERSION = sorted(Path(p).name for p in glob.glob("/etc/postgresql/*"))[-1]


def _pg_ctl(action: str) -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            CLUSTER_VERSION,
            "main",
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def restart_postgres_afterwards() -> Iterator[None]:
    try:
        yield
    finally:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", CLUSTER_VERSION, "main", "start"],
            capture_output=True,
            timeout=60,
        )
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-t", "30"], capture_output=True)


def test_postgres_stopped_mid_run_gives_fast_503_and_recovers(
    tmp_path: Path, pg_url: str, restart_postgres_afterwards: None
) -> None:
    settings = make_settings(tmp_path, database_url=pg_url, database_connect_timeout=2)
    app = create_app(settings)

    @app.get("/probe/db")
    async def probe(engine: EngineDep) -> dict[str, int]:
        one = await unit_of_work.read(engine, lambda c: c.execute(text("select 1")).scalar_one())
        return {"one": int(one)}

    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        assert client.get("/probe/db").json() == {"one": 1}

        _pg_ctl("stop")
        started = time.monotonic()
        first = client.get("/probe/db")
        assert time.monotonic() - started < settings.database_connect_timeout + 1
        assert first.status_code == 503
        assert first.json()["code"] == "DATABASE_UNAVAILABLE"
        assert int(first.headers["Retry-After"]) > 0

        # Once known to be down, requests fail fast without touching the network.
        for _ in range(5):
            started = time.monotonic()
            again = client.get("/probe/db")
            assert again.status_code == 503
            assert time.monotonic() - started < 0.5
        report = client.get("/config/database").json()
        assert report["connection_state"] == "PRIMARY_UNAVAILABLE"
        assert report["fallback_active"] is False  # no mid-run switch to SQLite
        assert report["last_error_kind"] == "unreachable"
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert client.get("/ready").status_code == 503

        _pg_ctl("start")
        assert wait_until(lambda: client.get("/probe/db").status_code == 200, timeout=30)
        assert client.get("/config/database").json()["connection_state"] == "PRIMARY_CONNECTED"
        assert client.get("/ready").status_code == 200
