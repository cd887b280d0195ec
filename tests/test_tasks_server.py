"""The task API in a real server process: concurrent writers on the SQLite default,
and a restart that keeps both the data and the generated secret."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx

from tests.server import ROOT, clean_env, run_server

CONCURRENT = 64


def mint(env: dict[str, str], cwd: Path, user: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "src", "token", "--user", user, "--ttl", "1h"],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_concurrent_creates_and_a_restart_on_the_sqlite_default(tmp_path: Path) -> None:
    env = clean_env(HOME=str(tmp_path / "home"), SQLITE_PATH=str(tmp_path / "data" / "todo.db"))
    # Minted before the server ever ran: the CLI creates the secret file the server reuses.
    token = mint(env, tmp_path, "alice")
    headers = {"Authorization": f"Bearer {token}"}

    with run_server(env, cwd=tmp_path) as server:
        with server.client() as client:
            for _ in range(200):
                if client.get("/ready").status_code == 200:
                    break
                threading.Event().wait(0.05)
            assert client.get("/ready").status_code == 200

        barrier = threading.Barrier(CONCURRENT)

        def create(i: int) -> tuple[int, str]:
            # One connection per writer, all released at once.
            with httpx.Client(base_url=server.base_url, timeout=30) as own:
                barrier.wait()
                response = own.post(
                    "/api/alice/tasks",
                    json={"title": f"task {i} ✓", "description": "concurrent"},
                    headers={**headers, "X-Request-ID": f"create-{i}"},
                )
                return response.status_code, response.text

        with ThreadPoolExecutor(CONCURRENT) as pool:
            results = list(pool.map(create, range(CONCURRENT)))
        assert [status for status, _ in results] == [201] * CONCURRENT, [
            text for status, text in results if status != 201
        ][:3]

        with server.client() as client:
            listed = client.get("/api/alice/tasks?limit=100", headers=headers)
            assert listed.status_code == 200
            assert listed.headers["x-total-count"] == str(CONCURRENT)
            titles = {t["title"] for t in listed.json()}
            assert titles == {f"task {i} ✓" for i in range(CONCURRENT)}
            before = listed.json()
        logs = server.logs()
        assert "database is locked" not in logs
        assert "create-17" in logs  # the request id is in the access line
        assert "created the generated secret" not in logs  # the CLI made it first
        assert "reusing the generated secret" in logs

    # Same SQLITE_PATH and HOME, new process: same data, same secret, old token valid.
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        for _ in range(200):
            if client.get("/ready").status_code == 200:
                break
            threading.Event().wait(0.05)
        after = client.get("/api/alice/tasks?limit=100", headers=headers)
        assert after.status_code == 200, after.text
        assert after.json() == before
        assert after.headers["x-total-count"] == str(CONCURRENT)
        assert token not in server.logs()
