"""Which SQLite file stands in for a primary (src.database.fallback_file), and which tasks
follow it there: only those written in its place. A SQLite database used on purpose, or
a file that stood in for another primary, is never emptied into it; the fallback gets a
file of its own beside it. Against a throwaway cluster of our own, stopped and started.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from src.config.settings import Settings
from src.database.primary_in_use import PrimaryInUse
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
from tests.server import ROOT, clean_env

ALICE = bearer("alice")


def _settings(tmp_path: Path, url: str | None = None, **more: object) -> Settings:
    values: dict[str, object] = {
        **more,
        "better_auth_secret": TEST_SECRET,
        "database_startup_retries": 0,
        "database_connect_timeout": 1,
        "database_retry_delay_ms": 200,
    }
    if url is not None:
        values["database_url"] = url
    return make_settings(tmp_path, **values)


def _titles_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT title FROM tasks"))


def _primary_titles(cluster: PgCluster, database: str) -> list[str]:
    with psycopg.connect(cluster.admin_url(database)) as conn:
        has = conn.execute("SELECT to_regclass('tasks') IS NOT NULL").fetchone()
        if not has or not has[0]:
            return []
        return sorted(row[0] for row in conn.execute("SELECT title FROM tasks"))


def _own_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("todo-fallback-*.db"))


def _create(client: TestClient, title: str) -> None:
    response = client.post("/api/alice/tasks", json={"title": title}, headers=ALICE)
    assert response.status_code == 201, response.text


def test_a_sqlite_database_used_on_purpose_is_never_moved_into_the_primary(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    database = stoppable_cluster.new_database("todo_own")
    with running_app(_settings(tmp_path)) as (_, client):  # no DATABASE_URL: on purpose
        wait_ready(client)
        _create(client, "mine")
    stoppable_cluster.stop()
    try:
        # The URL is given, its server is down: the fallback must not be that database.
        with running_app(_settings(tmp_path, stoppable_cluster.url(database))) as (_, client):
            report = wait_ready(client)
            assert report["fallback_active"] is True
            assert "todo-fallback-" in report["sqlite_path"]
            assert client.get("/api/alice/tasks", headers=ALICE).json() == []
            _create(client, "during the outage")
            stoppable_cluster.start()
            wait_state(client, "PRIMARY_CONNECTED", timeout=40)
        assert _primary_titles(stoppable_cluster, database) == ["during the outage"]
        assert _titles_in(tmp_path / "todo.db") == ["mine"]
    finally:
        stoppable_cluster.start()


def test_a_fallback_for_one_primary_is_never_moved_into_another(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    first = stoppable_cluster.new_database("todo_first")
    second = stoppable_cluster.new_database("todo_second")
    stoppable_cluster.stop()
    try:
        with running_app(_settings(tmp_path, stoppable_cluster.url(first))) as (_, client):
            assert wait_ready(client)["fallback_active"] is True
            _create(client, "meant for the first")
        with running_app(_settings(tmp_path, stoppable_cluster.url(second))) as (_, client):
            report = wait_ready(client)
            assert report["fallback_active"] is True
            assert "todo-fallback-" in report["sqlite_path"]
            _create(client, "meant for the second")
        stoppable_cluster.start()
        # The second starts on its primary: its own fallback file moves in, not the first's.
        with running_app(_settings(tmp_path, stoppable_cluster.url(second))) as (_, client):
            assert wait_ready(client)["connection_state"] == "PRIMARY_CONNECTED"
            titles = [t["title"] for t in client.get("/api/alice/tasks", headers=ALICE).json()]
            assert titles == ["meant for the second"]  # moved before it was ready
        assert _titles_in(tmp_path / "todo.db") == ["meant for the first"]
        # And the first, configured again, gets its own.
        with running_app(_settings(tmp_path, stoppable_cluster.url(first))) as (_, client):
            assert wait_ready(client)["connection_state"] == "PRIMARY_CONNECTED"
        assert _primary_titles(stoppable_cluster, first) == ["meant for the first"]
        assert _primary_titles(stoppable_cluster, second) == ["meant for the second"]
    finally:
        stoppable_cluster.start()


def test_a_fallback_used_without_database_url_becomes_the_apps_own(
    tmp_path: Path, stoppable_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    database = stoppable_cluster.new_database("todo_adopted")
    url = stoppable_cluster.url(database)
    stoppable_cluster.stop()
    try:
        with running_app(_settings(tmp_path, url)) as (_, client):
            assert wait_ready(client)["fallback_active"] is True
            _create(client, "written in its place")
        with running_app(_settings(tmp_path)) as (_, client):  # DATABASE_URL removed
            wait_ready(client)
            _create(client, "written on purpose")
        assert "held 1 task(s) written in place of a database" in caplog.text
        stoppable_cluster.start()
        with running_app(_settings(tmp_path, url)) as (_, client):
            assert wait_ready(client)["connection_state"] == "PRIMARY_CONNECTED"
            assert client.get("/config/database").json()["promotion"] is None
        assert _primary_titles(stoppable_cluster, database) == []
        assert _titles_in(tmp_path / "todo.db") == ["written in its place", "written on purpose"]
        assert _own_files(tmp_path) == []
    finally:
        stoppable_cluster.start()


def test_a_worker_does_not_fall_back_while_a_sibling_serves_the_primary(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    database = stoppable_cluster.new_database("todo_sibling")
    sibling = PrimaryInUse(tmp_path / "todo.db")
    stoppable_cluster.stop()
    try:
        sibling.hold()  # another worker of the same server is on the primary
        with running_app(_settings(tmp_path, stoppable_cluster.url(database))) as (_, client):
            assert wait_until(
                lambda: (
                    client.get("/config/database").json()["connection_state"]
                    == "PRIMARY_UNAVAILABLE"
                )
            ), client.get("/config/database").json()
            refused = client.post("/api/alice/tasks", json={"title": "x"}, headers=ALICE)
            assert refused.status_code == 503
            assert "Another worker" in client.get("/config/database").json()["state_reason"]
            assert not (tmp_path / "todo.db").exists()
            stoppable_cluster.start()
            wait_state(client, "PRIMARY_CONNECTED", timeout=40)
            _create(client, "on the primary")
        assert _primary_titles(stoppable_cluster, database) == ["on the primary"]
    finally:
        sibling.release()
        stoppable_cluster.start()


def test_the_primary_lock_is_seen_by_others_only(tmp_path: Path) -> None:
    mine, other = PrimaryInUse(tmp_path / "todo.db"), PrimaryInUse(tmp_path / "todo.db")
    assert not other.elsewhere()
    mine.hold()
    mine.hold()  # idempotent
    assert other.elsewhere()
    assert not mine.elsewhere()  # its holder is not "another worker"
    other.hold()  # shared: both may serve the primary
    mine.release()
    other.release()
    assert not mine.elsewhere()
    assert not PrimaryInUse(None).elsewhere()


def _wipe(tmp_path: Path) -> None:
    """What a Space's restart does to the container disk."""
    for path in [*tmp_path.glob("todo*.db*"), *tmp_path.glob(".todo*")]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def test_the_fallbacks_own_file_has_its_own_replica(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    database = stoppable_cluster.new_database("todo_replicated")
    url = stoppable_cluster.url(database)
    replica = {"sqlite_replica_url": f"file://{tmp_path}/replica"}
    with running_app(_settings(tmp_path, **replica)) as (_, client):
        wait_ready(client)
        _create(client, "mine")
    stoppable_cluster.stop()
    try:
        with running_app(_settings(tmp_path, url, **replica)) as (_, client):
            report = wait_ready(client)
            assert "todo-fallback-" in report["sqlite_path"]
            assert "/replica-fallback-" in report["replication"]["replica_url"]
            _create(client, "during the outage")
        # The disk is wiped: each file comes back from its own replica.
        _wipe(tmp_path)
        with running_app(_settings(tmp_path, **replica)) as (_, client):
            wait_ready(client)
            listed = client.get("/api/alice/tasks", headers=ALICE).json()
            assert [t["title"] for t in listed] == ["mine"]
        _wipe(tmp_path)
        with running_app(_settings(tmp_path, url, **replica)) as (_, client):
            assert wait_ready(client)["fallback_active"] is True
            listed = client.get("/api/alice/tasks", headers=ALICE).json()
            assert [t["title"] for t in listed] == ["during the outage"]
    finally:
        stoppable_cluster.start()


def _replicated_outage(
    tmp_path: Path, cluster: PgCluster, *titles: str
) -> tuple[str, str, dict[str, str]]:
    """A primary down at start, a replicated fallback given `titles`, the primary back:
    (its database, its URL, the replica setting)."""
    database = cluster.new_database("todo_outage")
    url = cluster.url(database)
    replica = {"sqlite_replica_url": f"file://{tmp_path}/replica"}
    cluster.stop()
    try:
        with running_app(_settings(tmp_path, url, **replica)) as (_, client):
            assert wait_ready(client)["fallback_active"] is True
            for title in titles:
                _create(client, title)
    finally:
        cluster.start()
    return database, url, replica


def test_a_fallback_only_its_replica_holds_moves_at_the_next_start(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    """The host's disk was wiped (a Space's restart) before the primary came back: the
    fallback's tasks come back from its replica and move into the primary before it
    serves; the replica then holds the hand-over, so the next wiped start moves nothing
    and a task deleted in the primary stays deleted."""
    database, url, replica = _replicated_outage(
        tmp_path, stoppable_cluster, "during the outage", "deleted later"
    )
    _wipe(tmp_path)
    with running_app(_settings(tmp_path, url, **replica)) as (_, client):
        report = wait_ready(client)
        assert report["connection_state"] == "PRIMARY_CONNECTED"
        assert "moved 2 task(s)" in report["promotion"]  # before the first task request
        listed = client.get("/api/alice/tasks", headers=ALICE).json()
        assert sorted(t["title"] for t in listed) == ["deleted later", "during the outage"]
        gone = next(t["id"] for t in listed if t["title"] == "deleted later")
        assert client.delete(f"/api/alice/tasks/{gone}", headers=ALICE).status_code == 204
    _wipe(tmp_path)
    with running_app(_settings(tmp_path, url, **replica)) as (_, client):
        report = wait_ready(client)
        assert report["connection_state"] == "PRIMARY_CONNECTED"
        assert report["promotion"] is None
    assert _primary_titles(stoppable_cluster, database) == ["during the outage"]


def test_an_unreadable_replica_does_not_keep_the_primary_from_serving(
    tmp_path: Path, stoppable_cluster: PgCluster, refused_port: int
) -> None:
    database = stoppable_cluster.new_database("todo_replica_refused")
    bucket = f"s3://bucket/todo?endpoint=http://127.0.0.1:{refused_port}&region=us-east-1"
    replica = {
        "sqlite_replica_url": bucket,
        "aws_access_key_id": "key",
        "aws_secret_access_key": "secret",
    }
    with running_app(_settings(tmp_path, stoppable_cluster.url(database), **replica)) as (
        _,
        client,
    ):
        report = wait_ready(client)
        assert report["connection_state"] == "PRIMARY_CONNECTED"
        assert report["promotion"] is None
        _create(client, "on the primary")
    assert _primary_titles(stoppable_cluster, database) == ["on the primary"]
    assert not (tmp_path / "todo.db").exists()  # nothing restored, nothing created


def test_a_hand_over_the_replica_missed_is_shipped_at_the_next_start(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    """The process died between moving the fallback's tasks and Litestream's final sync:
    the file on this disk is handed over, its replica is not. The next start ships it, so
    that a wiped start later does not bring back a task deleted in the primary."""
    from sqlalchemy import create_engine

    from src.database.engine import create_database_engine
    from src.database.promotion import move_tasks
    from src.database.sqlite_locator import locate_for

    database, url, replica = _replicated_outage(
        tmp_path, stoppable_cluster, "deleted later", "kept"
    )
    # The move as a dying process made it: the file handed over, the replica untold.
    settings = _settings(tmp_path, url, **replica)
    migrate = subprocess.run(
        [sys.executable, "-m", "src", "migrate"],
        env={**clean_env(HOME=str(tmp_path / "home"), DATABASE_URL=url), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stderr
    fallback = create_database_engine(locate_for(settings).url, settings)
    primary = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        from sqlalchemy.engine import make_url

        assert move_tasks(fallback, primary, make_url(url)).handed_over
    finally:
        fallback.dispose()
        primary.dispose()
    with running_app(_settings(tmp_path, url, **replica)) as (_, client):
        assert wait_ready(client)["connection_state"] == "PRIMARY_CONNECTED"
        listed = client.get("/api/alice/tasks", headers=ALICE).json()
        gone = next(t["id"] for t in listed if t["title"] == "deleted later")
        assert client.delete(f"/api/alice/tasks/{gone}", headers=ALICE).status_code == 204
    # The replica confirmed it: a start on this same disk does not ship it again.
    from src.database.replica_leftovers import replicated

    assert replicated(tmp_path / "todo.db")
    _wipe(tmp_path)
    with running_app(_settings(tmp_path, url, **replica)) as (_, client):
        report = wait_ready(client)
        assert report["connection_state"] == "PRIMARY_CONNECTED"
        assert report["promotion"] is None
    assert _primary_titles(stoppable_cluster, database) == ["kept"]


def test_a_refused_primary_that_becomes_usable_never_takes_the_apps_own_tasks(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    """The fallback (a file of its own: the app's SQLite file holds its own tasks) stopped
    serving when the primary answered and refused the migration; when the primary is
    granted what it needs, only the fallback's tasks move into it — the SQLite database
    used on purpose before keeps its own."""
    with running_app(_settings(tmp_path)) as (_, client):
        wait_ready(client)
        _create(client, "mine")
    database = f"todo_granted_{uuid.uuid4().hex[:8]}"
    role = f"app_{database[-8:]}"
    with psycopg.connect(stoppable_cluster.admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    url = f"postgresql://{role}@127.0.0.1:{stoppable_cluster.port}/{database}"
    with running_app(_settings(tmp_path, url)) as (_, client):
        assert wait_ready(client)["fallback_active"] is True  # the database is missing
        _create(client, "during the refusal")
        with psycopg.connect(stoppable_cluster.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        with psycopg.connect(stoppable_cluster.admin_url(database), autocommit=True) as conn:
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        wait_state(client, "CONNECTION_ERROR", timeout=60)  # it answers; no migration
        with psycopg.connect(stoppable_cluster.admin_url(database), autocommit=True) as conn:
            conn.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        wait_state(client, "PRIMARY_CONNECTED", timeout=90)
    assert _titles_in(tmp_path / "todo.db") == ["mine"]
    assert _primary_titles(stoppable_cluster, database) == ["during the refusal"]


def test_workers_after_the_first_skip_a_replica_found_unreadable(
    tmp_path: Path, refused_port: int
) -> None:
    """Each worker waiting out the same unreachable endpoint in turn held the last one's
    start for several listings: after one found it unreadable, the others skip it."""
    from src.database import replica_leftovers
    from src.replication import replica_config

    settings = _settings(
        tmp_path,
        sqlite_replica_url=f"s3://b/todo?endpoint=http://127.0.0.1:{refused_port}&region=x",
        aws_access_key_id="key",
        aws_secret_access_key="secret",
    )
    config = replica_config(settings)
    assert config is not None and config.valid
    path = tmp_path / "todo.db"
    with pytest.raises(replica_leftovers.ReplicaUnreadable):
        replica_leftovers.restore_if_missing(config, path)
    with pytest.raises(replica_leftovers.ReplicaUnreadable, match="another worker"):
        replica_leftovers.restore_if_missing(config, path)
    assert not path.exists()
