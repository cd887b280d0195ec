"""URL shapes the resolver now accepts, proven end to end on the real servers.

Each test builds the app from a DATABASE_URL in that shape (no fallback allowed, so
a failure cannot hide behind SQLite), waits for /ready and sends a task through the
API, then checks on the server itself that the task landed there.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from fastapi.testclient import TestClient

from src.config.settings import APP_NAME
from tests.conftest import (
    MYSQL_ADMIN_PASSWORD,
    MYSQL_ADMIN_USER,
    MYSQL_HOST,
    MYSQL_PORT,
    PG_ADMIN,
    TEST_SECRET,
    bearer,
    make_settings,
    mysql_url,
    running_app,
    wait_ready,
)

SOCKET_DIR = "/var/run/postgresql"


def ready_report(tmp_path: Path, url: str) -> Any:
    settings = make_settings(
        tmp_path, database_url=url, better_auth_secret=TEST_SECRET, database_fallback="never"
    )
    return running_app(settings)


def round_trip(client: TestClient, title: str) -> dict[str, Any]:
    """POST a task, GET it back; the body of the GET."""
    user = f"u{uuid.uuid4().hex[:8]}"
    created = client.post(f"/api/{user}/tasks", json={"title": title}, headers=bearer(user))
    assert created.status_code == 201, created.text
    fetched = client.get(f"/api/{user}/tasks/{created.json()['id']}", headers=bearer(user))
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == created.json()
    body: dict[str, Any] = fetched.json()
    return body


def pg_titles(database: str) -> list[str]:
    with psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{database}") as conn:
        return [row[0] for row in conn.execute("SELECT title FROM tasks")]


def test_failover_host_list_skips_a_refused_host(
    tmp_path: Path, pg_database: str, refused_port: int
) -> None:
    url = (
        f"postgresql://postgres@127.0.0.1:{refused_port},127.0.0.1:5432/{pg_database}"
        "?target_session_attrs=read-write"
    )
    with ready_report(tmp_path, url) as (_, client):
        report = wait_ready(client)
        assert report["database_type"] == "postgresql", report
        assert report["primary_url"] == (
            f"postgresql+psycopg://***@/{pg_database}?host=127.0.0.1,127.0.0.1"
            f"&port={refused_port},5432&target_session_attrs=read-write"
        )
        assert not report["fallback_active"]
        title = f"failover {uuid.uuid4().hex[:6]}"
        round_trip(client, title)
    assert title in pg_titles(pg_database)


@pytest.mark.parametrize(
    "template",
    [
        "postgresql:///{db}",  # no host at all: libpq's default socket, as the OS user
        "postgresql://postgres@/{db}?host=" + SOCKET_DIR,
    ],
)
def test_unix_socket_urls(tmp_path: Path, pg_database: str, template: str) -> None:
    url = template.format(db=pg_database)
    with ready_report(tmp_path, url) as (_, client):
        report = wait_ready(client)
        assert report["database_type"] == "postgresql", report
        assert report["validation_errors"] == []
        title = f"socket {uuid.uuid4().hex[:6]}"
        round_trip(client, title)
        # It really is the socket: the server sees no client address for the app's sessions.
        with psycopg.connect(PG_ADMIN) as conn:
            rows = conn.execute(
                "SELECT client_addr FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = %s",
                (pg_database, APP_NAME),
            ).fetchall()
        assert rows and all(addr is None for (addr,) in rows), rows
    assert title in pg_titles(pg_database)


def test_mysql_utf8_charset_stores_emoji_byte_exact(tmp_path: Path, mysql_database: str) -> None:
    title = "Buy 🥛 — ☕ 𝄞 日本"
    with ready_report(tmp_path, mysql_url(mysql_database) + "?charset=utf8") as (_, client):
        report = wait_ready(client)
        assert report["database_type"] == "mysql", report
        assert any("utf8mb4" in r for r in report["repairs"])
        task = round_trip(client, title)
        assert task["title"].encode() == title.encode()
    conn = pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user=MYSQL_ADMIN_USER,
        password=MYSQL_ADMIN_PASSWORD,
        database=mysql_database,
        charset="utf8mb4",
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT HEX(title) FROM tasks WHERE id = %s", (task["id"],))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None and bytes.fromhex(row[0]) == title.encode()
