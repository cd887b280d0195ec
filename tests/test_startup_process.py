"""Start-up as a deployer sees it: a real process, real HTTP, the real log output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SPECIAL_PASSWORD, SPECIAL_USER
from tests.server import ROOT, clean_env, run_server

HOSTILE_VALUES = [
    "",
    " ",
    "None",
    "null",
    "not a url at all",
    "mongodb://admin:hunter2@mongo:27017",
    "postgresql://user:password@host:port/dbname",
    "postgresql://u:p@h:0/db",
    "sqlite://two-slashes.db",
    "sqlite:///~/todo.db",
    "\x01\x02\x7fbinary",
    "x" * 10000,
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_import_never_raises(tmp_path: Path, value: str) -> None:
    env = clean_env(
        DATABASE_URL=value,
        DATABASE_POOL_SIZE="abc",
        DATABASE_STARTUP_RETRIES="many",
        PORT="seventy",
        HOME=str(tmp_path),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import src.main; from src.application import create_app; create_app()",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


def test_sqlite_default_answers_health_quickly(tmp_path: Path) -> None:
    env = clean_env(HOME=str(tmp_path / "home"), SQLITE_PATH=str(tmp_path / "todo.db"))
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        assert server.first_health_seconds is not None
        assert server.first_health_seconds < 5
        server.wait_ready()
        report = client.get("/config/database").json()
        assert report["connection_state"] == "FALLBACK_CONNECTED"
        assert report["sqlite_path"] == str(tmp_path / "todo.db")
        assert client.get("/health").json()["status"] == "healthy"


def test_hung_primary_health_within_two_seconds_and_no_secrets_logged(
    tmp_path: Path, hung_port: int
) -> None:
    url = f"postgresql://{SPECIAL_USER}:{SPECIAL_PASSWORD}@127.0.0.1:{hung_port}/app"
    env = clean_env(
        DATABASE_URL=url,
        DATABASE_CONNECT_TIMEOUT="1",
        DATABASE_STARTUP_RETRIES="2",
        DATABASE_RETRY_DELAY_MS="100",
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "todo.db"),
        LOG_LEVEL="debug",
    )
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        assert server.first_health_seconds is not None
        # The budget is from process start (interpreter start-up included).
        assert server.first_health_seconds < 2.0, server.first_health_seconds
        health = client.get("/health").json()
        # Still loading the application, or trying the primary that never answers.
        assert health["database_status"] in (
            "DISCONNECTED",
            "CONNECTING_PRIMARY",
            "CONNECTING_FALLBACK",
        )
        import time

        deadline = time.monotonic() + 20
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        report = client.get("/config/database")
        assert report.json()["fallback_active"] is True
        assert report.json()["last_error_kind"] == "timeout"
        bodies = report.text + client.get("/").text + client.get("/health").text
    logs = server.logs()
    assert "timeout" in logs
    for secret in (SPECIAL_PASSWORD, SPECIAL_USER, "p%40ss"):
        assert secret not in logs
        assert secret not in bodies


def test_settings_warnings_are_logged_once_at_start(tmp_path: Path) -> None:
    """The README promises a warning "in the log, on /config/database and in doctor" for an
    invalid value; it reached only the last two."""
    env = clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "todo.db"),
        DATABASE_POOL_SIZE="abc",
        CORS_ORIGINS="my-app.example",  # not an origin: ignored, with a warning
    )
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        server.wait_ready()
        warnings = client.get("/config/database").json()["settings_warnings"]
        for _ in range(3):  # requests do not repeat them
            client.get("/config/database")
    assert len(warnings) == 2, warnings
    assert any(w.startswith("DATABASE_POOL_SIZE is invalid") for w in warnings), warnings
    lines = server.logs().splitlines()
    for warning in warnings:
        logged = [line for line in lines if line.endswith(warning)]
        assert len(logged) == 1, (warning, lines)
        assert " WARNING " in logged[0], logged


def test_an_invalid_better_auth_url_is_a_settings_warning_everywhere(tmp_path: Path) -> None:
    """An invalid BETTER_AUTH_URL was one log line, quoting the value; /config/database,
    doctor and the status page (which said "set BETTER_AUTH_URL") did not know."""
    # A secret pasted into the wrong variable: it must not be echoed anywhere.
    pasted = "sk_live_Xq9PastedSecret7"
    env = clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "todo.db"),
        BETTER_AUTH_URL=pasted,
        BETTER_AUTH_JWKS_URL=f"ftp://{pasted}",
    )
    with run_server(env, cwd=tmp_path) as server, server.client() as client:
        server.wait_ready()
        report = client.get("/config/database")
        status = client.get("/", headers={"Accept": "application/json"})
        bodies = report.text + status.text + client.get("/").text
    warnings = report.json()["settings_warnings"]
    assert warnings == [
        "BETTER_AUTH_URL is not an http(s) URL such as https://my-app.vercel.app: it does "
        "not start with http:// or https://; it is ignored.",
        "BETTER_AUTH_JWKS_URL is not an http(s) URL such as "
        "https://my-app.vercel.app/api/auth/jwks: it does not start with http:// or "
        "https://; it is ignored.",
    ]
    description = status.json()["auth"]["description"]
    assert description.startswith("BETTER_AUTH_URL and BETTER_AUTH_JWKS_URL are set but invalid"), (
        description
    )
    assert "set BETTER_AUTH_URL" not in description
    assert "correct BETTER_AUTH_URL" in description
    logs = server.logs()
    lines = logs.splitlines()
    for warning in warnings:
        assert len([line for line in lines if line.endswith(warning)]) == 1, lines
    assert pasted not in logs
    assert pasted not in bodies
    doctor = subprocess.run(
        [sys.executable, "-m", "src", "doctor"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Settings warnings:" in doctor.stdout, doctor.stdout
    for warning in warnings:
        assert f"  - {warning}" in doctor.stdout
    assert pasted not in doctor.stdout + doctor.stderr
