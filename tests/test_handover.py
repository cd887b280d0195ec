"""The hand-over of a SQLite fallback to the primary, as another worker sees it.

Workers share the fallback file. The first to reach the primary moves every task and
drops the fallback's `tasks` table (src.database.promotion); a worker that has not switched
yet must never write a task there again — its next statement finds the table gone, it
switches, and the request is served by the primary. Here the other worker is played by
the test calling `move_tasks` on the same file, against a throwaway cluster of our own.
"""

from __future__ import annotations

import sqlite3
import uuid
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
from src.database.fallback_file import claim
from src.database.migrations import upgrade_to_head
from src.database.promotion import handed_over, move_tasks
from src.database.resolver import resolve_database_url
from src.models.task import tasks_table
from tests.conftest import (
    TEST_SECRET,
    bearer,
    make_settings,
    running_app,
    wait_ready,
    wait_state,
    wait_until,
)
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
    # By default the worker's own probe of the primary waits long: what switches it is the
    # hand-over, found by a request or by its look at the file.
    values.setdefault("database_retry_delay_ms", 5000)
    return make_settings(
        tmp_path,
        database_url=url,
        better_auth_secret=TEST_SECRET,
        database_startup_retries=0,
        database_connect_timeout=1,
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
        wait_state(client, "PRIMARY_UNAVAILABLE", timeout=20)
        assert client.get("/ready").status_code == 503
        with sqlite3.connect(tmp_path / "todo.db") as raw:
            tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        assert "tasks" not in tables

        stoppable_cluster.start()
        wait_state(client, "PRIMARY_CONNECTED", timeout=40)
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


_BOOM = """
CREATE FUNCTION todo_test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.title = 'boom' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER todo_test_boom BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION todo_test_boom();
"""
_NO_BOOM = "DROP TRIGGER todo_test_boom ON tasks; DROP FUNCTION todo_test_boom();"


def test_a_failed_move_leaves_nothing_behind_and_deletes_follow_the_tasks(
    engines: _Engines,
) -> None:
    fallback, primary, url = engines.fallback, engines.primary, engines.url
    assert claim(fallback, url)
    ids = [str(uuid.UUID(int=n)) for n in range(1, 702)]
    with fallback.begin() as conn:
        for n, task_id in enumerate(ids):
            conn.execute(_insert(task_id, "boom" if n == 650 else f"t{n}", "alice"))
    with primary.begin() as conn:
        conn.exec_driver_sql(_BOOM)
    with pytest.raises(sa.exc.SQLAlchemyError) as failed:
        move_tasks(fallback, primary, url)  # the second batch fails
    with primary.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tasks").scalar() == 0
    assert not handed_over(fallback, url)
    # While the failure is still referenced (a log record, a traceback), no connection the
    # pool hands out reads an old snapshot or finds the file locked.
    assert failed.value is not None
    with sqlite3.connect(engines.path) as other:
        other.execute("DELETE FROM tasks WHERE title = 't700'")
    for _ in range(3):
        with fallback.begin() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM tasks").scalar() == len(ids) - 1
    with sqlite3.connect(engines.path) as other:
        other.execute("INSERT INTO tasks SELECT * FROM tasks WHERE 0")  # nothing, but no lock
    ids.remove(ids[700])

    # Copies the primary holds already (a crash between the move's two commits), one of
    # them changed there after the fallback deleted it: only the older copy is deleted.
    stale, changed = ids[0], ids[1]
    with primary.begin() as conn:
        conn.execute(_insert(stale, "old copy", "alice"))
        conn.execute(
            _insert(changed, "changed since", "alice").values(
                updated_at=datetime(2999, 1, 1, tzinfo=UTC)
            )
        )
        conn.exec_driver_sql(_NO_BOOM)
    with fallback.begin() as conn:
        conn.execute(tasks_table.delete().where(tasks_table.c.id.in_([stale, changed])))
    report = move_tasks(fallback, primary, url)
    assert report.deleted == 1
    assert "1 task(s) deleted in the fallback were deleted there too" in report.describe()
    with primary.connect() as conn:
        stored = dict(conn.exec_driver_sql("SELECT id, title FROM tasks").all())
    assert stale not in stored
    assert stored[changed] == "changed since"
    assert len(stored) == len(ids) - 1


def test_after_a_failed_move_the_fallback_serves_what_it_holds(
    tmp_path: Path, stoppable_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    database = stoppable_cluster.new_database("todo_handover")
    settings = _settings(tmp_path, stoppable_cluster.url(database), database_retry_delay_ms=200)
    url = resolve_database_url(settings.database_url).url
    assert url is not None
    primary = create_database_engine(url, settings)
    try:
        upgrade_to_head(primary)
        with primary.begin() as conn:
            conn.exec_driver_sql(_BOOM)
    finally:
        primary.dispose()
    alice = bearer("alice")
    stoppable_cluster.stop()
    try:
        with running_app(settings) as (_, client):
            assert wait_ready(client)["fallback_active"] is True
            made = [
                client.post("/api/alice/tasks", json={"title": title}, headers=alice).json()["id"]
                for title in ("keep", "delete me")
            ]
            # More than a batch, and the refused task in the second: the move's cursor is
            # still open when it fails.
            filler = create_database_engine(
                sa.engine.make_url(f"sqlite:///{tmp_path / 'todo.db'}"), settings
            )
            try:
                with filler.begin() as conn:
                    for n in range(600):
                        conn.execute(_insert(str(uuid.UUID(int=n + 1)), f"filler {n}", "bob"))
                    conn.execute(_insert("ffffffff-ffff-4fff-8fff-ffffffffffff", "boom", "alice"))
            finally:
                filler.dispose()
            made.append("ffffffff-ffff-4fff-8fff-ffffffffffff")
            stoppable_cluster.start()
            assert wait_until(lambda: "primary failed" in caplog.text, timeout=30)
            assert client.get("/config/database").json()["connection_state"] == (
                "FALLBACK_CONNECTED"
            )
            # Reads see what the fallback holds now, not a snapshot the failed move kept.
            deleted = client.delete(f"/api/alice/tasks/{made[1]}", headers=alice)
            assert deleted.status_code == 204
            assert client.get(f"/api/alice/tasks/{made[1]}", headers=alice).status_code == 404
            new = client.post("/api/alice/tasks", json={"title": "new"}, headers=alice).json()
            assert client.get(f"/api/alice/tasks/{new['id']}", headers=alice).status_code == 200
            with psycopg.connect(stoppable_cluster.admin_url(database), autocommit=True) as conn:
                conn.execute(_NO_BOOM)
            wait_state(client, "PRIMARY_CONNECTED", timeout=40)
            titles = sorted(
                t["title"] for t in client.get("/api/alice/tasks", headers=alice).json()
            )
            assert titles == ["boom", "keep", "new"]
        stored = _primary_ids(stoppable_cluster, database)
        assert len(stored) == 603
        assert {made[0], made[2], new["id"]} <= stored
        assert made[1] not in stored
    finally:
        stoppable_cluster.start()
