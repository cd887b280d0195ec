"""SQLite work on the event loop never makes the loop wait (src.database.inline): a
writer that finds the database locked by someone else awaits it for a moment and then
finishes in a worker thread, a query that runs long finishes in one too, and the server
keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import make_url
from sqlalchemy.engine import Connection

from src.database.engine import create_database_engine
from src.database.inline import CONTENDED_WAIT_SECONDS, Deferred, InlineSqlite
from tests.conftest import TEST_SECRET, bearer, make_settings
from tests.server import Server, clean_env, run_server

ALICE = bearer("alice")


def _server(tmp_path: Path) -> tuple[dict[str, str], Path]:
    database = tmp_path / "todo.db"
    env = clean_env(
        HOME=str(tmp_path / "home"), SQLITE_PATH=str(database), BETTER_AUTH_SECRET=TEST_SECRET
    )
    return env, database


def _health_latencies(server: Server, stop: threading.Event) -> list[float]:
    latencies: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                client.get("/health")
                latencies.append(time.monotonic() - started)
                time.sleep(0.01)

    thread = threading.Thread(target=probe)
    thread.start()
    stop.wait()
    thread.join(10)
    return latencies


def test_a_write_that_finds_the_database_locked_waits_in_a_thread(tmp_path: Path) -> None:
    env, database = _server(tmp_path)
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        server.wait_ready()
        other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        stop = threading.Event()
        result: dict[str, object] = {}

        def create() -> None:
            result["response"] = client.post(
                "/api/alice/tasks", json={"title": "waited"}, headers=ALICE
            )
            stop.set()

        writer = threading.Thread(target=create)
        writer.start()
        threading.Timer(0.8, other.rollback).start()
        latencies = _health_latencies(server, stop)
        writer.join(20)
        other.close()
    response = result["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 201, response.text
    # The loop kept answering while the write waited for the lock (0.8 s).
    assert latencies and max(latencies) < 0.5, max(latencies)


def test_a_long_query_is_finished_in_a_thread(tmp_path: Path) -> None:
    env, database = _server(tmp_path)
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        server.wait_ready()
        # Enough of one user's tasks that skipping to the last page takes well over the
        # loop's budget (20 ms).
        count = 400_000
        with sqlite3.connect(database) as conn:
            conn.executemany(
                "INSERT INTO tasks (id, user_id, title, description, status, created_at, "
                "updated_at) VALUES (?, 'alice', ?, NULL, 'pending', ?, ?)",
                (
                    (
                        str(uuid.UUID(int=i)),
                        f"t{i}",
                        f"2026-01-01 00:00:{i % 60:02d}.{i:06d}",
                        "2026-01-01 00:00:00.000000",
                    )
                    for i in range(count)
                ),
            )
        stop = threading.Event()
        result: dict[str, object] = {}

        def read() -> None:
            result["response"] = client.get(
                f"/api/alice/tasks?limit=5&offset={count - 5}", headers=ALICE, timeout=60
            )
            stop.set()

        reader = threading.Thread(target=read)
        reader.start()
        latencies = _health_latencies(server, stop)
        reader.join(60)
    response = result["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 5
    assert response.headers["x-total-count"] == str(count)
    assert latencies and max(latencies) < 0.5, max(latencies)


def _inline(tmp_path: Path) -> tuple[InlineSqlite, Path]:
    database = tmp_path / "inline.db"
    engine = create_database_engine(make_url(f"sqlite:///{database}"), make_settings(tmp_path))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (thread TEXT)")
    return InlineSqlite(engine), database


def _insert_here(connection: Connection) -> str:
    name = threading.current_thread().name
    connection.connection.driver_connection.execute("INSERT INTO t VALUES (?)", (name,))
    return name


def test_a_briefly_contended_write_waits_on_the_loop_not_in_a_thread(tmp_path: Path) -> None:
    """Handing every contended write to a thread made the threads hold the in-process
    writer lock in turn, and all later writes followed them there (bench.replication):
    a lock held for a moment is awaited, and the write still runs on the loop."""
    inline, database = _inline(tmp_path)
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # Litestream's checkpoint, say
    threading.Timer(CONTENDED_WAIT_SECONDS / 5, other.rollback).start()

    async def both() -> tuple[str, str]:
        # One waits for the other process; the second for the in-process writer lock too.
        first, second = await asyncio.gather(
            inline.run_waiting(True, _insert_here), inline.run_waiting(True, _insert_here)
        )
        return first, second

    try:
        ran_on = asyncio.run(both())
    finally:
        other.close()
        inline.close()
    assert ran_on == ("MainThread", "MainThread")


def test_a_write_contended_past_the_wait_is_handed_to_a_thread(tmp_path: Path) -> None:
    inline, database = _inline(tmp_path)
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Deferred):
            asyncio.run(inline.run_waiting(True, _insert_here))
    finally:
        other.rollback()
        other.close()
        inline.close()
    with sqlite3.connect(database) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (0,)
