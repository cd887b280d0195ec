"""Tasks follow the database the user meant (issue 8, part 2): a primary unreachable at
start comes back, and the tasks written to the SQLite fallback meanwhile move into it
(idempotent by id, newest `updated_at` wins, once even with two workers), then the app
switches to it — without a restart. A fallback left by an earlier run moves at the next
start; a SQLite database that never stood in for this primary is left alone.

On a throwaway cluster of our own (tests/pgcluster.py), stopped and started by the test.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx2 as httpx
import psycopg
import pytest

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
from tests.server import clean_env, run_server


def _primary_titles(cluster: PgCluster, database: str) -> list[str]:
    with psycopg.connect(cluster.admin_url(database)) as conn:
        return sorted(row[0] for row in conn.execute("SELECT title FROM tasks"))


def _sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def _sqlite_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])


def test_fallback_tasks_move_into_the_primary_when_it_returns(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    database = stoppable_cluster.new_database("todo_promo")
    stoppable_cluster.stop()
    try:
        settings = make_settings(
            tmp_path,
            database_url=stoppable_cluster.url(database),
            better_auth_secret=TEST_SECRET,
            database_startup_retries=0,
            database_connect_timeout=1,
            database_retry_delay_ms=200,
        )
        with running_app(settings) as (_, client):
            report = wait_ready(client)
            assert report["fallback_active"] is True
            alice, bob = bearer("alice"), bearer("bob")
            ids = [
                client.post("/api/alice/tasks", json={"title": f"a{i}"}, headers=alice).json()["id"]
                for i in range(5)
            ]
            client.post("/api/bob/tasks", json={"title": "b0"}, headers=bob)
            edited = client.put(
                f"/api/alice/tasks/{ids[0]}", json={"title": "a0 edited"}, headers=alice
            )
            assert edited.status_code == 200
            client.delete(f"/api/alice/tasks/{ids[1]}", headers=alice)

            stoppable_cluster.start()
            wait_state(client, "PRIMARY_CONNECTED", timeout=40)
            report = client.get("/config/database").json()
            assert report["fallback_active"] is False
            assert "moved 5 task(s)" in report["promotion"], report["promotion"]
            # Served from the primary now, with every fallback task there.
            titles = [t["title"] for t in client.get("/api/alice/tasks", headers=alice).json()]
            assert sorted(titles) == ["a0 edited", "a2", "a3", "a4"]
            assert "moved 5 task(s)" in client.get("/").text
        assert _primary_titles(stoppable_cluster, database) == [
            "a0 edited",
            "a2",
            "a3",
            "a4",
            "b0",
        ]
        # Handed over: the fallback holds no task table any more, only the record of it.
        tables = _sqlite_tables(tmp_path / "todo.db")
        assert "tasks" not in tables
        assert "todo_handed_over" in tables
    finally:
        stoppable_cluster.start()


def test_two_workers_move_the_fallback_once(tmp_path: Path, stoppable_cluster: PgCluster) -> None:
    database = stoppable_cluster.new_database("todo_promo")
    stoppable_cluster.stop()
    env = clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "todo.db"),
        DATABASE_URL=stoppable_cluster.url(database),
        BETTER_AUTH_SECRET=TEST_SECRET,
        DATABASE_STARTUP_RETRIES="0",
        DATABASE_CONNECT_TIMEOUT="1",
        DATABASE_RETRY_DELAY_MS="200",
        WEB_CONCURRENCY="2",
    )
    acknowledged: list[str] = []
    stop = threading.Event()
    try:
        with run_server(env, cwd=tmp_path) as server:
            server.wait_ready()

            def write() -> None:
                with httpx.Client(base_url=server.base_url, timeout=10) as client:
                    n = 0
                    while not stop.is_set():
                        response = client.post(
                            "/api/alice/tasks", json={"title": f"t{n}"}, headers=bearer("alice")
                        )
                        if response.status_code == 201:
                            acknowledged.append(response.json()["id"])
                        n += 1

            writers = [threading.Thread(target=write) for _ in range(2)]
            for writer in writers:
                writer.start()
            time.sleep(1.0)
            stoppable_cluster.start()
            # Each worker logs its own switch; a kept-alive client would only ever ask one.
            assert wait_until(
                lambda: server.logs().count("Switched to the primary database") == 2,
                timeout=40,
            ), server.logs()[-3000:]
            states = {
                httpx.get(f"{server.base_url}/config/database").json()["connection_state"]
                for _ in range(12)
            }
            assert states == {"PRIMARY_CONNECTED"}
            time.sleep(0.5)
            stop.set()
            for writer in writers:
                writer.join(20)
            # One worker moved the tasks; the other found the fallback handed over.
            logs = server.logs()
            assert logs.count("Switched to the primary database: moved") == 1, logs[-3000:]
            assert logs.count("had already been moved into the primary") == 1, logs[-3000:]
        with psycopg.connect(stoppable_cluster.admin_url(database)) as conn:
            stored = [row[0] for row in conn.execute("SELECT id FROM tasks")]
        assert len(stored) == len(set(stored))
        assert set(acknowledged) <= set(stored), len(set(acknowledged) - set(stored))
        assert len(acknowledged) > 10
        assert "tasks" not in _sqlite_tables(tmp_path / "todo.db")
    finally:
        stop.set()
        stoppable_cluster.start()


def test_an_earlier_fallback_moves_at_the_next_start(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    database = stoppable_cluster.new_database("todo_promo")
    url = stoppable_cluster.url(database)
    quick = {
        "better_auth_secret": TEST_SECRET,
        "database_startup_retries": 0,
        "database_connect_timeout": 1,
    }
    stoppable_cluster.stop()
    try:
        with running_app(make_settings(tmp_path, database_url=url, **quick)) as (_, client):
            assert wait_ready(client)["fallback_active"] is True
            client.post("/api/alice/tasks", json={"title": "kept"}, headers=bearer("alice"))
        stoppable_cluster.start()
        with running_app(make_settings(tmp_path, database_url=url, **quick)) as (_, client):
            assert wait_ready(client)["connection_state"] == "PRIMARY_CONNECTED"
            # The move runs in the background once the primary serves.
            assert wait_until(lambda: client.get("/config/database").json()["promotion"])
            assert "moved 1 task(s)" in client.get("/config/database").json()["promotion"]
            assert _primary_titles(stoppable_cluster, database) == ["kept"]
    finally:
        stoppable_cluster.start()


@pytest.mark.usefixtures("stoppable_cluster")
def test_sqlite_that_never_stood_in_for_this_primary_is_left_alone(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    # A deployment used SQLite on purpose, then was given a DATABASE_URL.
    with running_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET)) as (_, client):
        wait_ready(client)
        client.post("/api/alice/tasks", json={"title": "local"}, headers=bearer("alice"))
    database = stoppable_cluster.new_database("todo_promo")
    settings = make_settings(
        tmp_path, database_url=stoppable_cluster.url(database), better_auth_secret=TEST_SECRET
    )
    with running_app(settings) as (_, client):
        assert wait_ready(client)["connection_state"] == "PRIMARY_CONNECTED"
        time.sleep(0.5)
        assert client.get("/config/database").json()["promotion"] is None
    assert _primary_titles(stoppable_cluster, database) == []
    assert _sqlite_count(tmp_path / "todo.db") == 1


def test_a_database_created_after_the_start_is_taken_up(
    tmp_path: Path, stoppable_cluster: PgCluster
) -> None:
    """The server answers but the database does not exist yet (the operator creates it
    after deploying): the app serves from SQLite meanwhile, then moves its tasks into the
    new database and switches, without a restart."""
    name = "todo_created_later"
    url = stoppable_cluster.url(name)
    settings = make_settings(
        tmp_path,
        database_url=url,
        better_auth_secret=TEST_SECRET,
        database_startup_retries=0,
        database_connect_timeout=2,
        database_retry_delay_ms=100,
    )
    with running_app(settings) as (_, client):
        report = wait_ready(client)
        assert report["fallback_active"] is True
        assert report["last_error_kind"] == "database_missing"
        created = client.post(
            "/api/alice/tasks", json={"title": "before the database"}, headers=bearer("alice")
        )
        assert created.status_code == 201
        with psycopg.connect(stoppable_cluster.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        wait_state(client, "PRIMARY_CONNECTED", timeout=60)
        assert "moved 1 task(s)" in client.get("/config/database").json()["promotion"]
    assert _primary_titles(stoppable_cluster, name) == ["before the database"]
