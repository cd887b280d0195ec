"""`python -m src serve`: host, port, workers and proxy headers; and what SIGTERM does to a
real server process: requests in flight finish, every 201 is stored, the engine is
disposed and the SQLite log is checkpointed into the database file, with one worker or two.
"""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import pytest

from src.cli import serve as serve_module
from src.cli.main import main
from tests.server import clean_env, run_server

SECRET = "serve-test-secret-" + "y" * 32
USER = "alice"


def _token() -> str:
    return jwt.encode({"sub": USER, "exp": int(time.time()) + 600}, SECRET, "HS256")


# -- what `serve` asks uvicorn for ------------------------------------------------


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_run(app: str, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr(serve_module.uvicorn, "run", fake_run)
    for name in ("PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_serve_defaults(uvicorn_calls: list[dict[str, Any]]) -> None:
    assert main([]) == 0  # `serve` is the default command
    (call,) = uvicorn_calls
    assert call["app"] == "src.main:app"
    assert call["host"] == "0.0.0.0"
    assert call["port"] == 7860
    assert call["workers"] == 1
    assert call["proxy_headers"] is True
    assert call["forwarded_allow_ips"] == "*"
    assert call["timeout_graceful_shutdown"] > 0
    # The head-bounded protocol, as an import string that spawned workers can import.
    assert call["http"] == "src.http.protocol:BoundedHttpToolsProtocol"


def test_serve_reads_port_and_workers_from_the_environment(
    uvicorn_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    main(["serve"])
    assert (uvicorn_calls[-1]["port"], uvicorn_calls[-1]["workers"]) == (8123, 3)
    assert uvicorn_calls[-1]["forwarded_allow_ips"] == "10.0.0.1"
    main(["serve", "--port", "9000", "--workers", "2", "--host", "127.0.0.1"])
    call = uvicorn_calls[-1]
    assert (call["host"], call["port"], call["workers"]) == ("127.0.0.1", 9000, 2)


def test_serve_ignores_invalid_port_and_workers(
    uvicorn_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "seventy")
    monkeypatch.setenv("WEB_CONCURRENCY", "0")
    main(["serve"])
    assert (uvicorn_calls[-1]["port"], uvicorn_calls[-1]["workers"]) == (7860, 1)


# -- a real server ------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "todo.db"),
        BETTER_AUTH_SECRET=SECRET,
        **extra,
    )


def _wait_ready(client: httpx.Client, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/config/database").text
        time.sleep(0.05)


def _rows(database: Path, query: str) -> list[tuple[Any, ...]]:
    """Read a copy of the database file alone: what a checkpoint has put in it."""
    copy = database.with_name("copy-" + database.name)
    shutil.copyfile(database, copy)
    try:
        connection = sqlite3.connect(copy)
        try:
            return connection.execute(query).fetchall()
        finally:
            connection.close()
    finally:
        copy.unlink()


def test_proxy_headers_are_honoured(tmp_path: Path) -> None:
    """Behind a Space's proxy, the client is the one the proxy names, and a trailing slash
    is served in place, never redirected to a URL built from the client's Host header."""
    with run_server(_env(tmp_path), cwd=tmp_path) as server, server.client() as client:
        response = client.get(
            "/health/", headers={"X-Forwarded-For": "203.0.113.7", "Host": "evil.example"}
        )
        assert response.status_code == 200, response.text
        assert "location" not in response.headers
        deadline = time.monotonic() + 5
        while "GET /health 200" not in server.logs():
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.05)
        assert "203.0.113.7" in server.logs()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_disposes_the_engine_and_checkpoints_sqlite(tmp_path: Path, workers: int) -> None:
    database = tmp_path / "todo.db"
    wal = tmp_path / "todo.db-wal"
    env = _env(tmp_path, WEB_CONCURRENCY=str(workers))
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        _wait_ready(client)
        # Every worker is up (each has opened the database) before the signal.
        deadline = time.monotonic() + 20
        while server.logs().count("Application startup complete") < workers:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.05)
        assert len(set(_started_pids(server.logs()))) == workers, server.logs()
        # The migration is in the write-ahead log, not yet in the database file.
        assert wal.exists() and wal.stat().st_size > 0
        assert ("alembic_version",) not in _rows(database, "select name from sqlite_master")
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
    logs = server.logs()
    assert logs.count("Application shutdown complete") == workers, logs
    assert not wal.exists() or wal.stat().st_size == 0
    assert ("alembic_version",) in _rows(database, "select name from sqlite_master")


def test_without_a_clean_shutdown_the_log_is_not_checkpointed(tmp_path: Path) -> None:
    """The control for the test above: SIGKILL skips the shutdown, and it shows."""
    database = tmp_path / "todo.db"
    with run_server(_env(tmp_path), cwd=tmp_path) as server, server.client() as client:
        _wait_ready(client)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
    assert (tmp_path / "todo.db-wal").stat().st_size > 0
    assert ("alembic_version",) not in _rows(database, "select name from sqlite_master")


def _started_pids(logs: str) -> list[str]:
    return re.findall(r"Started server process \[(\d+)\]", logs)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_mid_burst_keeps_every_acknowledged_write(tmp_path: Path, workers: int) -> None:
    """Depends on the task API (issue 3). Many concurrent POSTs, SIGTERM in the middle:
    every request answered 201 is in the database after a restart on the same file."""
    env = _env(tmp_path, WEB_CONCURRENCY=str(workers))
    headers = {"Authorization": f"Bearer {_token()}"}
    acknowledged: list[tuple[float, str]] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    with run_server(env, cwd=tmp_path) as server:
        with server.client() as client:
            _wait_ready(client)
            probe = client.post(f"/api/{USER}/tasks", json={"title": "probe"}, headers=headers)
            assert probe.status_code == 201, probe.text
            acknowledged.append((time.monotonic(), probe.json()["id"]))

        def writer(number: int) -> None:
            with server.client(timeout=30) as own:
                sent = 0
                while not stop.is_set():
                    sent += 1
                    try:
                        response = own.post(
                            f"/api/{USER}/tasks",
                            json={"title": f"w{number}-{sent}"},
                            headers=headers,
                        )
                    except httpx.HTTPError as exc:  # the server is going away
                        with lock:
                            failures.append(type(exc).__name__)
                        return
                    with lock:
                        if response.status_code == 201:
                            acknowledged.append((time.monotonic(), response.json()["id"]))
                        else:
                            failures.append(str(response.status_code))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(24)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        signalled_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        stop.set()
        for thread in threads:
            thread.join(30)
        first_logs = server.logs()

    assert len(acknowledged) >= 200, (len(acknowledged), failures[:5], first_logs[-2000:])
    assert first_logs.count("Application shutdown complete") == workers, first_logs[-3000:]
    # Requests that were in flight when SIGTERM arrived were answered, not cut off.
    assert any(at > signalled_at for at, _ in acknowledged), "no request finished after SIGTERM"
    # No error response: the only failures are connections refused/closed after shutdown.
    assert all(not code.isdigit() for code in failures), failures
    ids = {task_id for _, task_id in acknowledged}
    # The database file alone (the log was checkpointed into it) has every one, and
    # nothing else: no request was cut off between its commit and its answer.
    stored = {row[0] for row in _rows(tmp_path / "todo.db", "select id from tasks")}
    assert ids <= stored, len(ids - stored)
    assert stored == ids, f"{len(stored - ids)} writes stored without their 201 reaching the client"
    # …and so does the app, restarted on the same file.
    with run_server(_env(tmp_path), cwd=tmp_path) as server, server.client() as client:
        _wait_ready(client)
        seen: set[str] = set()
        offset = 0
        while True:
            page = client.get(
                f"/api/{USER}/tasks", params={"limit": 100, "offset": offset}, headers=headers
            )
            assert page.status_code == 200, page.text
            batch = [task["id"] for task in page.json()]
            seen.update(batch)
            if len(batch) < 100:
                break
            offset += 100
        assert int(page.headers["x-total-count"]) == len(seen)
    assert ids <= seen, len(ids - seen)
