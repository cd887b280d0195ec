"""One bad connection is not an outage (issue: "a request's failure flips the whole
database to unavailable"). On the real PostgreSQL and MariaDB: connections killed by the
server are replaced without a single 503; a timeout or lock wait answers its own request
and leaves the primary connected."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from fastapi.testclient import TestClient

from tests.conftest import (
    PG_ADMIN,
    TEST_SECRET,
    _mysql_admin,
    bearer,
    make_settings,
    mysql_url,
    running_app,
    wait_ready,
)

USER = "alice"


def _app(tmp_path: Path, url: str, **values: Any) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        database_url=url,
        better_auth_secret=TEST_SECRET,
        database_fallback="never",
        database_connect_timeout=2,
        **values,
    )
    with running_app(settings) as (_, client):
        wait_ready(client)
        yield client


def _state(client: TestClient) -> str:
    return str(client.get("/config/database").json()["connection_state"])


def _terminate_app_sessions(database: str) -> int:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'todo-backend'",
            (database,),
        ).fetchall()
    return len(rows)


@pytest.fixture
def pg_client(tmp_path: Path, pg_url: str) -> Iterator[TestClient]:
    yield from _app(tmp_path, pg_url)


def test_killed_pooled_connections_are_replaced_without_a_503(
    pg_client: TestClient, pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = pg_client
    created = client.post(f"/api/{USER}/tasks", json={"title": "a"}, headers=bearer(USER))
    assert created.status_code == 201
    task = created.json()["id"]
    statuses: list[int] = []
    for round_ in range(6):
        # Neon's scale-to-zero and pg_terminate_backend look alike to the client.
        assert _terminate_app_sessions(pg_database) >= 1, round_
        time.sleep(0.05)
        for method, path, body in (
            ("GET", f"/api/{USER}/tasks", None),
            ("PUT", f"/api/{USER}/tasks/{task}", {"title": f"edit {round_}"}),
            ("POST", f"/api/{USER}/tasks", {"title": f"new {round_}"}),
        ):
            response = client.request(method, path, json=body, headers=bearer(USER))
            statuses.append(response.status_code)
    assert 503 not in statuses, statuses
    assert _state(client) == "PRIMARY_CONNECTED"
    listing = client.get(f"/api/{USER}/tasks", headers=bearer(USER)).json()
    assert len(listing) == 1 + 6  # every create landed exactly once
    text = caplog.text
    assert "check the host and port" not in text


def test_idle_session_timeout_never_reaches_a_request(
    tmp_path: Path, pg_url: str, pg_database: str
) -> None:
    # As reported: idle_session_timeout shorter than the gap between requests.
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{pg_database}\" SET idle_session_timeout = '400ms'")
    for client in _app(tmp_path, pg_url):
        statuses = []
        for _ in range(6):
            time.sleep(0.7)
            statuses.append(client.get(f"/api/{USER}/tasks", headers=bearer(USER)).status_code)
        assert statuses == [200] * 6
        assert _state(client) == "PRIMARY_CONNECTED"


def test_held_row_lock_times_out_one_request_only(pg_client: TestClient, pg_database: str) -> None:
    client = pg_client
    locked = client.post(f"/api/{USER}/tasks", json={"title": "locked"}, headers=bearer(USER))
    task = locked.json()["id"]
    holder = psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_database}")
    try:
        holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task,))
        results: dict[str, int] = {}

        def edit() -> None:
            response = client.put(
                f"/api/{USER}/tasks/{task}", json={"title": "x"}, headers=bearer(USER)
            )
            results["edit"] = response.status_code
            results["code"] = response.json()["code"]  # type: ignore[assignment]

        worker = threading.Thread(target=edit)
        worker.start()
        others = [
            client.get(f"/api/{USER}/tasks", headers=bearer(USER)).status_code for _ in range(5)
        ]
        worker.join(30)
        assert others == [200] * 5
        assert results["edit"] == 503
        assert results["code"] == "DATABASE_TIMEOUT"  # type: ignore[comparison-overlap]
        time.sleep(1.5)  # the confirming probe has run
        assert _state(client) == "PRIMARY_CONNECTED"
        assert client.get(f"/api/{USER}/tasks", headers=bearer(USER)).status_code == 200
    finally:
        holder.close()


@pytest.fixture
def pg_lock_timeout_client(tmp_path: Path, pg_url: str, pg_database: str) -> Iterator[TestClient]:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{pg_database}\" SET lock_timeout = '300ms'")
    yield from _app(tmp_path, pg_url)


def test_server_lock_timeout_is_busy_not_an_outage(
    pg_lock_timeout_client: TestClient, pg_database: str
) -> None:
    client = pg_lock_timeout_client
    task = client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=bearer(USER)).json()
    holder = psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_database}")
    try:
        holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task["id"],))
        response = client.patch(f"/api/{USER}/tasks/{task['id']}/complete", headers=bearer(USER))
        assert response.status_code == 503
        assert response.json()["code"] == "DATABASE_BUSY"
        assert response.headers["Retry-After"] == "1"
        assert _state(client) == "PRIMARY_CONNECTED"
    finally:
        holder.close()
    # The toggle did not happen (it was refused), and now it does.
    again = client.patch(f"/api/{USER}/tasks/{task['id']}/complete", headers=bearer(USER))
    assert again.status_code == 200 and again.json()["status"] == "completed"


@pytest.fixture
def mysql_client(tmp_path: Path, mysql_database: str) -> Iterator[TestClient]:
    yield from _app(tmp_path, mysql_url(mysql_database), database_statement_timeout=2)


def _kill_mysql_sessions(database: str) -> int:
    admin = _mysql_admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                "CONNECTION_ID()",
                (database,),
            )
            ids = [row[0] for row in cursor.fetchall()]
            for session in ids:
                cursor.execute(f"KILL {int(session)}")
        return len(ids)
    finally:
        admin.close()


def test_killed_mariadb_connections_are_replaced_without_a_503(
    mysql_client: TestClient, mysql_database: str
) -> None:
    client = mysql_client
    statuses = []
    for round_ in range(4):
        assert client.get(f"/api/{USER}/tasks", headers=bearer(USER)).status_code == 200
        assert _kill_mysql_sessions(mysql_database) >= 1
        time.sleep(0.05)
        statuses.append(
            client.post(
                f"/api/{USER}/tasks", json={"title": f"t{round_}"}, headers=bearer(USER)
            ).status_code
        )
        statuses.append(client.get(f"/api/{USER}/tasks", headers=bearer(USER)).status_code)
    assert 503 not in statuses, statuses
    assert len(client.get(f"/api/{USER}/tasks", headers=bearer(USER)).json()) == 4
    assert _state(client) == "PRIMARY_CONNECTED"


def test_mariadb_lock_wait_answers_one_request(
    mysql_client: TestClient, mysql_database: str
) -> None:
    client = mysql_client
    task = client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=bearer(USER)).json()
    holder = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=mysql_database, autocommit=False
    )
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task["id"],))
            response = client.put(
                f"/api/{USER}/tasks/{task['id']}", json={"title": "x"}, headers=bearer(USER)
            )
            assert response.status_code == 503, response.text
            assert response.json()["code"] in ("DATABASE_TIMEOUT", "DATABASE_BUSY")
            assert client.get(f"/api/{USER}/tasks", headers=bearer(USER)).status_code == 200
        time.sleep(1.5)
        assert _state(client) == "PRIMARY_CONNECTED"
    finally:
        holder.close()


def test_supabase_pooler_rejecting_the_user_is_a_configuration_error(tmp_path: Path) -> None:
    from tests.netfaults import PostgresRefuser

    pooler = PostgresRefuser("Tenant or user not found")
    try:
        url = f"postgresql://postgres:pw@127.0.0.1:{pooler.port}/postgres"
        settings = make_settings(
            tmp_path, database_url=url, database_startup_retries=3, database_connect_timeout=2
        )
        with running_app(settings) as (_, client):
            report = wait_ready(client)  # on the SQLite fallback: the URL is unusable
        assert report["last_error_kind"] == "configuration", report
        assert "postgres.<project-ref>" in report["last_error"]
        # Not retried: a pooler that does not know the user will not learn it.
        assert report["connection_attempts_count"] == 2  # the primary once, then SQLite
        assert pooler.connections <= 2  # libpq may try once with and once without TLS
    finally:
        pooler.close()
