"""`/`: the facts an operator needs, as HTML or JSON, for every database situation; never
a secret; HEAD answers 200."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from src.api.status_page import AUTH_NOT_CONFIGURED
from tests.conftest import (
    SPECIAL_PASSWORD,
    SPECIAL_USER,
    make_settings,
    running_app,
    wait_decided,
    wait_ready,
)

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
AUTH_SECRET = "status-page-secret-" + "z" * 32


def test_sqlite_default_html_and_json(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with running_app(settings) as (_, client):
        wait_ready(client)
        facts = client.get("/", headers=JSON).json()
        page = client.get("/", headers=BROWSER)
    assert facts["service"] == "todo-backend" and facts["version"]
    assert facts["status"] == "healthy" and facts["ready"] is True
    db = facts["database"]
    assert db["type"] == "sqlite"
    assert db["why"] == "DATABASE_URL is not set."
    assert db["sqlite_path"] == str(tmp_path / "todo.db")
    assert db["persistent"] in (True, False) and db["persistence_note"]
    assert facts["links"] == {
        "docs": "/docs",
        "health": "/health",
        "ready": "/ready",
        "database": "/config/database",
    }
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for fact in ("todo-backend", "SQLite", "DATABASE_URL is not set.", str(tmp_path / "todo.db")):
        assert fact in html
    for link in ("/docs", "/health", "/config/database"):
        assert f'href="{link}"' in html
    assert ("Data will not survive a restart" in html) is (db["persistent"] is False)


def test_on_a_space_the_page_warns_that_data_will_be_lost(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, space_id="someone/todo")
    with running_app(settings) as (_, client):
        wait_ready(client)
        facts = client.get("/", headers=JSON).json()
        html = client.get("/").text
    assert facts["database"]["persistent"] is False
    assert "Data will not survive a restart" in html
    assert facts["database"]["persistence_note"] in html.replace("&#x27;", "'")


def test_head_answers_200_at_once_even_while_the_database_is_decided(
    tmp_path: Path, hung_port: int
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=f"postgresql://u:p@127.0.0.1:{hung_port}/db",
        database_connect_timeout=2,
        database_startup_retries=1,
    )
    with running_app(settings) as (_, client):
        started = time.monotonic()
        head = client.head("/")
        page = client.get("/")
        elapsed = time.monotonic() - started
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/html")
    assert page.status_code == 200
    assert elapsed < 1.0
    assert "still being connected" in page.text


def test_primary_database_in_use(tmp_path: Path, pg_url: str) -> None:
    settings = make_settings(tmp_path, database_url=pg_url)
    with running_app(settings) as (_, client):
        wait_ready(client)
        facts = client.get("/", headers=JSON).json()
        html = client.get("/").text
    db = facts["database"]
    assert db["type"] == "postgresql"
    assert db["why"] == "DATABASE_URL is set and the database answered."
    assert db["persistent"] is True and db["sqlite_path"] is None
    assert db["persistence_note"] == (
        "The tasks are kept in the primary database (PostgreSQL), not in SQLite."
    )
    assert db["primary_url"].startswith("postgresql+psycopg://***@")
    assert "PostgreSQL" in html and "Data will not survive" not in html


def test_no_database_at_all_is_shown_with_the_reason(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        database_url="postgresql://user:password@host:port/dbname",
        database_fallback="never",
    )
    with running_app(settings) as (_, client):
        wait_decided(client)
        response = client.get("/")
        facts = client.get("/", headers=JSON).json()
    assert response.status_code == 200
    assert facts["status"] == "degraded" and facts["ready"] is False
    assert facts["database"]["type"] is None
    assert facts["database"]["validation_errors"]
    assert "No database is available" in response.text
    assert "template placeholder" in response.text


def test_auth_mode_is_shown_and_only_its_public_fields(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with running_app(settings) as (app, client):
        wait_ready(client)
        app.state.auth_mode = None
        assert client.get("/", headers=JSON).json()["auth"]["description"] == AUTH_NOT_CONFIGURED
        assert AUTH_NOT_CONFIGURED in client.get("/").text
        app.state.auth_mode = {
            "mode": "configured",
            "description": "Tokens are checked with BETTER_AUTH_SECRET (HS256).",
            "secret_file": None,
            "secret": "must-never-be-shown",
        }
        facts = client.get("/", headers=JSON).json()
        html = client.get("/").text
    assert facts["auth"] == {
        "mode": "configured",
        "description": "Tokens are checked with BETTER_AUTH_SECRET (HS256).",
        "secret_file": None,
    }
    assert "Tokens are checked with BETTER_AUTH_SECRET (HS256)." in html
    assert "must-never-be-shown" not in html + str(facts)


def test_no_secret_is_ever_shown(tmp_path: Path, refused_port: int) -> None:
    url = f"postgresql://{SPECIAL_USER}:{SPECIAL_PASSWORD}@127.0.0.1:{refused_port}/todo"
    settings = make_settings(
        tmp_path,
        database_url=url,
        database_startup_retries=1,
        better_auth_secret=AUTH_SECRET,
    )
    with running_app(settings) as (app, client):
        wait_ready(client)  # on SQLite, after the primary failed
        # Even if a secret reached a description, the page would not show it.
        app.state.auth_mode = {"mode": "configured", "description": f"uses {AUTH_SECRET}"}
        bodies = client.get("/").text + client.get("/", headers=JSON).text
    assert "unreachable" in bodies  # the failure itself is shown
    for secret in (SPECIAL_PASSWORD, SPECIAL_USER, "p%40ss", AUTH_SECRET):
        assert secret not in bodies


@pytest.mark.parametrize(
    ("accept", "json_expected"),
    [
        ("application/json", True),
        ("application/json, text/plain, */*", True),
        ("*/*", False),
        ("", False),
        (BROWSER["Accept"], False),
    ],
)
def test_content_negotiation(tmp_path: Path, accept: str, json_expected: bool) -> None:
    with running_app(make_settings(tmp_path)) as (_, client):
        response = client.get("/", headers={"Accept": accept})
    assert response.headers["content-type"].startswith(
        "application/json" if json_expected else "text/html"
    )


def test_page_headers_allow_the_space_iframe_and_forbid_external_assets(tmp_path: Path) -> None:
    with running_app(make_settings(tmp_path)) as (_, client):
        response = client.get("/")
    assert "x-frame-options" not in response.headers  # Spaces embed the app in an iframe
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors" not in policy
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text and "http://" not in response.text
    assert "https://" not in response.text
