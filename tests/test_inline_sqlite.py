"""SQLite work on the event loop never makes the loop wait (src.database.inline): a
writer that finds the database locked by someone else, and a query that runs long, both
finish in a worker thread while the server keeps answering."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx2 as httpx

from tests.conftest import TEST_SECRET, bearer
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
