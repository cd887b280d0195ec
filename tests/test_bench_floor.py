"""The benchmark's floor (bench/floor.py) is only a fair yardstick if it does what the app
does: on one database, both list the same tasks as the same bytes with the same total,
create tasks in the same shape, and refuse the same requests with the same status.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx2 as httpx
import jwt
import pytest

from tests.server import clean_env, free_port, run_server

SECRET = "floor-test-secret-" + "z" * 32


def _headers(user: str) -> dict[str, str]:
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, "HS256")
    return {"Authorization": f"Bearer {token}", "X-Request-ID": "parity-check"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, str], str]:
    """(the app's environment for it, the floor's BENCH_DATABASE)."""
    if request.param == "sqlite":
        path = tmp_path / "todo.db"
        return {"SQLITE_PATH": str(path)}, f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    return {"DATABASE_URL": url}, url


def test_the_floor_answers_like_the_app(
    database: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    app_database, floor_database = database
    env = clean_env(HOME=str(tmp_path / "home"), BETTER_AUTH_SECRET=SECRET, LOG_LEVEL="warning")
    floor_port = free_port()
    floor_command = [sys.executable, "-m", "bench.floor", "--port", str(floor_port)]
    with (
        run_server({**env, **app_database}, cwd=tmp_path) as app,
        run_server(
            {**env, "BENCH_DATABASE": floor_database},
            cwd=tmp_path,
            command=floor_command,
            port=floor_port,
        ) as floor,
    ):
        app.wait_ready()
        alice = _headers("alice")
        created = {}
        for name, server in (("app", app), ("floor", floor)):
            for number in range(3):
                body = {"title": f"  {name} {number} ", "description": "é" if number else None}
                response = httpx.post(
                    f"{server.base_url}/api/alice/tasks", json=body, headers=alice
                )
                assert response.status_code == 201, response.text
                created[name, number] = response
        for number in range(3):
            made_by_app, made_by_floor = created["app", number], created["floor", number]
            assert list(made_by_app.json()) == list(made_by_floor.json())
            assert made_by_floor.json()["title"] == f"floor {number}"
            for header in ("content-type", "x-request-id", "x-content-type-options"):
                assert made_by_app.headers[header] == made_by_floor.headers[header]
            task_id = made_by_floor.json()["id"]
            assert made_by_floor.headers["location"] == f"/api/alice/tasks/{task_id}"

        # Pages that end the list (no count) and pages that do not (a count), filters.
        for query in ("", "?limit=2", "?limit=6", "?limit=2&offset=2", "?status=completed"):
            ours = httpx.get(f"{app.base_url}/api/alice/tasks{query}", headers=alice)
            theirs = httpx.get(f"{floor.base_url}/api/alice/tasks{query}", headers=alice)
            assert ours.status_code == theirs.status_code == 200
            assert ours.content == theirs.content, query
            assert ours.headers["x-total-count"] == theirs.headers["x-total-count"], query

        refusals = [
            ("GET", "/api/bob/tasks", None, alice),
            ("GET", "/api/alice/tasks", None, {}),
            ("GET", "/api/alice/tasks?limit=101", None, alice),
            ("POST", "/api/alice/tasks", {"title": "   "}, alice),
            ("POST", "/api/alice/tasks", {"title": "x", "done": True}, alice),
            ("POST", "/api/alice/tasks", {"title": "x" * 256}, alice),
        ]
        for method, path, body, headers in refusals:
            ours = httpx.request(method, app.base_url + path, json=body, headers=headers)
            theirs = httpx.request(method, floor.base_url + path, json=body, headers=headers)
            assert ours.status_code == theirs.status_code, (method, path, body)
            assert ours.json()["code"] == theirs.json()["code"], (method, path, body)
