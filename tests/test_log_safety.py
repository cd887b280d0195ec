"""Logs a client cannot forge and that never carry a secret, in text and JSON (issue
"Logs and secrets"); user names masked where they are credentials, not as words.

Real servers in subprocesses: the log lines checked are the ones an operator reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import psycopg
import pytest

from tests.conftest import TEST_SECRET, bearer
from tests.server import clean_env, run_server

# Every character that an encoder might escape: quote, backslash, percent, plus, space,
# non-ASCII; and long enough to be masked wherever it appears.
NASTY_PASSWORD = 'p"a\\ss% +wörd✓-Zq9'
ORDINARY_USER = "app"
_LINE_START = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ")


@pytest.fixture(scope="module")
def nasty_role(scram_cluster: dict[str, Any]) -> dict[str, Any]:
    """A role named like an ordinary word, whose password needs escaping everywhere."""
    with psycopg.connect(scram_cluster["admin_url"], autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{ORDINARY_USER}"')
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(ORDINARY_USER), psycopg.sql.Literal(NASTY_PASSWORD)
            )
        )
    return scram_cluster


def _spellings(secret: str) -> set[str]:
    return {
        secret,
        quote(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


def _exercise(base_url: str) -> list[str]:
    bodies = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for path in ("/", "/health", "/ready", "/config/database"):
            bodies.append(client.get(path).text)
        bodies.append(
            client.post("/api/alice/tasks", json={"title": "x"}, headers=bearer("alice")).text
        )
    return bodies


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_secret_in_any_log_format(
    tmp_path: Path, nasty_role: dict[str, Any], log_format: str
) -> None:
    c = nasty_role
    # Pasted raw, as people do: the resolver takes the password as written.
    url = f"postgresql://{ORDINARY_USER}:{NASTY_PASSWORD}x@127.0.0.1:{c['port']}/{c['database']}"
    env = clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "app" / "data" / "todo.db"),
        DATABASE_URL=url,
        BETTER_AUTH_SECRET=TEST_SECRET,
        DATABASE_STARTUP_RETRIES="0",
        LOG_FORMAT=log_format,
        LOG_LEVEL="debug",
    )
    with run_server(env, cwd=tmp_path) as server:
        server.wait_ready()
        bodies = _exercise(server.base_url)
        logs = server.logs()
    everything = logs + "\n".join(bodies)
    for spelling in _spellings(NASTY_PASSWORD):
        assert spelling not in everything, spelling
    # The user name is masked where it stands as a credential...
    assert 'user "app"' not in logs and 'user \\"app\\"' not in logs
    assert "authentication" in logs
    # ...but not as a word: the fallback's path keeps its "app" directory.
    report = json.loads(bodies[3])
    assert report["sqlite_path"] == str(tmp_path / "app" / "data" / "todo.db")
    if log_format == "json":
        records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_client_cannot_forge_log_lines_or_reach_the_terminal(tmp_path: Path) -> None:
    env = clean_env(HOME=str(tmp_path / "home"), SQLITE_PATH=str(tmp_path / "todo.db"))
    with run_server(env, cwd=tmp_path) as server:
        server.wait_ready()
        forged = "/x%0A2099-01-01%2000:00:00,000%20ERROR%20%20%20src%20FORGED"
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            assert client.get(forged).status_code == 404
            assert client.get("/y%1b[31mred%00nul%0d").status_code == 404
            assert client.get("/health").status_code == 200
        logs = server.logs()
    assert "\x1b" not in logs and "\x00" not in logs and "\r" not in logs
    for line in logs.splitlines():
        if "FORGED" in line:
            assert _LINE_START.match(line) and "GET /x\\n2099" in line, line
            assert not line.startswith("2099")
    assert "GET /y\\x1b[31mred\\x00nul\\r" in logs


def test_json_lines_carry_no_terminal_colours(tmp_path: Path) -> None:
    """uvicorn attaches a `color_message` (its message with terminal escape codes) to its
    own records; JSON lines carried it:
    `"color_message": "Started server process [\\u001b[36m%d…"`."""
    env = clean_env(
        HOME=str(tmp_path / "home"), SQLITE_PATH=str(tmp_path / "todo.db"), LOG_FORMAT="json"
    )
    with run_server(env, cwd=tmp_path) as server:
        server.wait_ready()
    logs = server.logs()  # after the stop: "Finished server process" too
    records = [json.loads(line) for line in logs.splitlines() if line.strip()]
    messages = [record["message"] for record in records]
    assert any(m.startswith("Started server process") for m in messages), messages
    assert any(m.startswith("Finished server process") for m in messages), messages
    assert any(m.startswith("Uvicorn running on") for m in messages), messages
    assert not [record for record in records if "color_message" in record]
    assert "\x1b" not in logs and "\\u001b" not in logs
