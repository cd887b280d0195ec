"""The hand-over of a SQLite fallback to the primary, as another worker sees it.

Workers share the fallback file. The first to reach the primary moves every task and
drops the fallback's `tasks` table (src.database.promotion); a worker that has not switched
yet must never write a task there again — its next statement finds the table gone, it
switches, and the request is served by the primary. Here the other worker is played by
the test calling `move_tasks` on the same file, against a throwaway cluster of our own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from src.config.settings import Settings
from src.database.engine import create_database_engine
from src.database.migrations import upgrade_to_head
from src.database.promotion import handed_over, move_tasks
from src.database.resolver import resolve_database_url
from src.models.task import tasks_table
from tests.conftest import TEST_SECRET, bearer, make_settings, running_app, wait_ready, wait_until
from tests.pgcluster import PgCluster


def _primary_ids(cluster: PgCluster, database: str) -> set[str]:
    with psycopg.connect(cluster.admin_url(database)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM tasks")}


def _other_worker_hands_over(settings: Settings, sqlite_path: Path) -> str:
    """What the first worker to reach the primary does: migrate it, move, hand over."""
    url = resolve_database_url(settings.database_url).url
    assert url is not None
    primary = create_database_engine(url, settings)
    fallback = create_database_engine(sa.engine.make_url(f"sqlite:///{sqlite_path}"), settings)
    try:
        upgrade_to_head(primary)
        return move_tasks(fallback, primary, url).describe()
    finally:
        primary.dispose()
        fallback.dispose()


def _insert(task_id: str, title: str, user: str) -> sa.Insert:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return tasks_table.insert().values(
        id=task_id, title=title, status="pending", user_id=user, created_at=at, updated_at=at
    )


class _Engines(NamedTuple):
    fallback: sa.Engine
    primary: sa.Engine
    url: sa.URL
    path: Path


def _settings(tmp_path: Path, url: str, **values: object) -> Settings:
    return make_settings(
        tmp_path,
        database_url=url,
        better_auth_secret=TEST_SECRET,
        database_startup_retries=0,
        database_connect_timeout=1,
        # The worker's own probe of the primary waits long: what switches it here is the
        # hand-over, found by a request or by its look at the file.
        database_retry_delay_ms=5000,
        **values,
    )


@contextmanager
def _serving_the_fallback(
    tmp_path: Path, cluster: PgCluster
) -> Iterator[tuple[TestClient, str, Settings]]:
    """An app on the SQLite fallback of a primary that is down (started again after)."""
    database = cluster.new_database("todo_handover")
    cluster.stop()
    try:
        settings = _settings(tmp_path, cluster.url(database))
        with running_app(settings) as (_, client):
            assert wait_ready(client)["fallback_active"] is True
            yield client, database, settings
    finally:
        cluster.start()


def test_a_worker_still_on_the_fallback_sends_its_next_write_to_the_primary(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    alice = bearer("alice")
    with _serving_the_fallback(tmp_path, stoppable_cluster) as (client, database, settings):
        before = client.post("/api/alice/tasks", json={"title": "before"}, headers=alice)
        assert before.status_code == 201
        stoppable_cluster.start()
        described = _other_worker_hands_over(settings, tmp_path / "todo.db")
        assert "moved 1 task(s)" in described

        # The fallback cannot take a task any more, from any connection.
        with sqlite3.connect(tmp_path / "todo.db") as raw, pytest.raises(sqlite3.Error):
            raw.execute("INSERT INTO tasks (id) VALUES ('x')")

        after = client.post("/api/alice/tasks", json={"title": "after"}, headers=alice)
        assert after.status_code == 201, after.text
        listed = client.get("/api/alice/tasks", headers=alice)
        assert listed.status_code == 200
        assert sorted(t["title"] for t in listed.json()) == ["after", "before"]
        report = client.get("/config/database").json()
        assert report["connection_state"] == "PRIMARY_CONNECTED"
        assert report["fallback_active"] is False
        assert "already been moved" in report["promotion"]
        assert _primary_ids(stoppable_cluster, database) == {
            before.json()["id"],
            after.json()["id"],
        }


def test_a_handed_over_fallback_is_never_served_again_while_the_primary_is_away(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    alice = bearer("alice")
    with _serving_the_fallback(tmp_path, stoppable_cluster) as (client, _, settings):
        client.post("/api/alice/tasks", json={"title": "kept"}, headers=alice)
        stoppable_cluster.start()
        _other_worker_hands_over(settings, tmp_path / "todo.db")
        stoppable_cluster.stop()

        # This worker cannot reach the primary: it refuses rather than write to SQLite.
        refused = client.post("/api/alice/tasks", json={"title": "lost?"}, headers=alice)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] in {"DATABASE_STARTING", "DATABASE_UNAVAILABLE"}
        assert "Retry-After" in refused.headers
        assert wait_until(
            lambda: (
                client.get("/config/database").json()["connection_state"] == "PRIMARY_UNAVAILABLE"
            ),
            timeout=20,
        ), client.get("/config/database").json()
        assert client.get("/ready").status_code == 503
        with sqlite3.connect(tmp_path / "todo.db") as raw:
            tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        assert "tasks" not in tables

        stoppable_cluster.start()
        assert wait_until(
            lambda: (
                client.get("/config/database").json()["connection_state"] == "PRIMARY_CONNECTED"
            ),
            timeout=40,
        ), client.get("/config/database").json()
        listed = client.get("/api/alice/tasks", headers=alice).json()
        assert [t["title"] for t in listed] == ["kept"]


@pytest.fixture
def engines(tmp_path: Path, stoppable_cluster: PgCluster) -> Iterator[_Engines]:
    """A migrated SQLite fallback and a migrated, empty primary."""
    database = stoppable_cluster.new_database("todo_handover")
    settings = _settings(tmp_path, stoppable_cluster.url(database))
    url = resolve_database_url(settings.database_url).url
    assert url is not None
    path = tmp_path / "todo.db"
    fallback = create_database_engine(sa.engine.make_url(f"sqlite:///{path}"), settings)
    primary = create_database_engine(url, settings)
    try:
        upgrade_to_head(fallback)
        upgrade_to_head(primary)
        yield _Engines(fallback, primary, url, path)
    finally:
        fallback.dispose()
        primary.dispose()


def test_hand_over_record_and_a_new_fallback_period(engines: _Engines) -> None:
    fallback, primary, url = engines.fallback, engines.primary, engines.url
    assert not handed_over(fallback, url)
    with fallback.begin() as conn:
        conn.execute(_insert("11111111-1111-4111-8111-111111111111", "t", "alice"))
    assert move_tasks(fallback, primary, url).seen == 1
    assert handed_over(fallback, url)
    # Handed over to this primary only.
    assert not handed_over(fallback, url.set(database=f"{url.database}_elsewhere"))
    # Moving again finds nothing: it was done.
    again = move_tasks(fallback, primary, url)
    assert again.earlier and again.seen == 0
    # A later fallback period migrates the file from scratch and is a live fallback.
    upgrade_to_head(fallback)
    assert not handed_over(fallback, url)
    with fallback.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tasks").scalar() == 0


def test_ids_another_user_owns_in_the_primary_are_kept_aside(engines: _Engines) -> None:
    fallback, primary, url = engines.fallback, engines.primary, engines.url
    shared = "22222222-2222-4222-8222-222222222222"
    own = "33333333-3333-4333-8333-333333333333"
    with primary.begin() as conn:
        conn.execute(_insert(shared, "bob's", "bob"))
    with fallback.begin() as conn:
        conn.execute(_insert(shared, "alice's", "alice"))
        conn.execute(_insert(own, "alice's own", "alice"))
    report = move_tasks(fallback, primary, url)
    assert report.conflicts == 1
    assert "todo_unmoved_tasks" in report.describe()
    with primary.connect() as conn:
        rows = dict(conn.exec_driver_sql("SELECT id, user_id FROM tasks").all())
    assert rows == {shared: "bob", own: "alice"}
    with sqlite3.connect(engines.path) as raw:
        kept = raw.execute("SELECT id, user_id, title FROM todo_unmoved_tasks").fetchall()
    assert kept == [(shared, "alice", "alice's")]
