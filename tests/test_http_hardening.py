"""Errors that are the client's, never 500s (issue: "errors that should be the user's"),
and what the public system endpoints disclose."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from src.http.json_body import loads_strict
from tests.conftest import (
    TEST_SECRET,
    _mysql_admin,
    bearer,
    make_settings,
    mysql_url,
    running_app,
    wait_ready,
)

ALICE = bearer("alice")
JSON = {"Content-Type": "application/json", **ALICE}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with running_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET)) as (_, client):
        wait_ready(client)
        yield client


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
@pytest.mark.parametrize(
    "template",
    [
        '{"title": %s}',
        '{"title": "t", "description": %s}',
        '{"title": "t", "extra": [1, {"x": %s}]}',
        "[%s]",
    ],
)
def test_non_finite_numbers_are_a_validation_error(
    client: TestClient, caplog: pytest.LogCaptureFixture, number: str, template: str
) -> None:
    caplog.set_level(logging.INFO)
    body = template % number
    for method, path in (("POST", "/api/alice/tasks"), ("PUT", f"/api/alice/tasks/{'0' * 8}")):
        response = client.request(method, path, content=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "VALIDATION_ERROR"
    assert "Traceback" not in caplog.text


def test_deep_nesting_and_bad_utf8_are_validation_errors(client: TestClient) -> None:
    for body in (b"[" * 30_000 + b"]" * 30_000, b'{"title": "\xff\xfe"}', b"\xef\xbb\xbf{}"):
        response = client.post("/api/alice/tasks", content=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "VALIDATION_ERROR"


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(), st.lists, max_leaves=8))
@example("Infinity")  # a string: the test's own oracle once read it as a number
def test_strict_parser_accepts_exactly_the_finite_json(value: object) -> None:
    import json
    import math

    def all_finite(item: object) -> bool:
        # From the value, not its text: the string "Infinity" is fine JSON.
        if isinstance(item, float):
            return math.isfinite(item)
        if isinstance(item, list):
            return all(all_finite(part) for part in item)
        return True

    text = json.dumps(value)
    finite = all_finite(value)
    try:
        parsed = loads_strict(text.encode())
    except json.JSONDecodeError:
        assert not finite
        return
    assert finite
    assert parsed == value or (isinstance(value, float) and math.isnan(value))


def test_trailing_slash_is_served_in_place_never_redirected(client: TestClient) -> None:
    created = client.post("/api/alice/tasks/", json={"title": "t"}, headers=ALICE)
    assert created.status_code == 201
    response = client.get(
        "/api/alice/tasks/", headers={**ALICE, "Host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 200
    assert "location" not in response.headers
    assert len(response.json()) == 1
    assert client.get("/nothing/", follow_redirects=False).status_code == 404


def test_task_responses_are_never_cached(client: TestClient) -> None:
    created = client.post("/api/alice/tasks", json={"title": "t"}, headers=ALICE)
    for response in (
        created,
        client.get("/api/alice/tasks", headers=ALICE),
        client.get(f"/api/alice/tasks/{created.json()['id']}", headers=ALICE),
        client.get("/api/alice/tasks"),  # 401
        client.get("/api/bob/tasks", headers=ALICE),  # 403
    ):
        assert response.headers["cache-control"] == "no-store", response.status_code


def test_minimal_detail_hides_identifiers(tmp_path: Path, refused_port: int) -> None:
    host_name = "db-secret-host.internal"
    url = f"postgresql://todo:pw@{host_name}:{refused_port}/customers_db"
    base = {"database_url": url, "database_startup_retries": 0, "database_connect_timeout": 1}
    for detail in ("full", "minimal"):
        settings_ = make_settings(tmp_path / detail, status_detail=detail, **base)
        with running_app(settings_) as (_, client):
            wait_ready(client)
            report = client.get("/config/database")
            page = client.get("/")
            ready = client.get("/ready")
        shown = report.text + page.text + ready.text
        identifiers = (host_name, "customers_db", str(tmp_path))
        if detail == "full":
            assert all(word in shown for word in identifiers[:2])
            assert "STATUS_DETAIL=minimal to hide" in page.text
            continue
        for word in identifiers:
            assert word not in shown, word
        body = report.json()
        assert body["status_detail"] == "minimal"
        assert body["history"] == []
        assert body["fallback_active"] is True and body["last_error_kind"] == "unreachable"
        assert "<host>" in body["fallback_reason"]
        assert "host names, database names and file paths are hidden" in page.text


def test_a_value_the_database_refuses_is_a_400(tmp_path: Path, mysql_database: str) -> None:
    # A tasks table a DBA converted to latin1: the emoji cannot be stored there.
    admin = _mysql_admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"USE `{mysql_database}`")
            cursor.execute(
                "CREATE TABLE tasks (id VARCHAR(36) PRIMARY KEY, user_id VARCHAR(255) NOT NULL,"
                " title VARCHAR(255) NOT NULL, description TEXT, status VARCHAR(16) NOT NULL,"
                " created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL)"
                " CHARACTER SET latin1"
            )
            cursor.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            cursor.execute("INSERT INTO alembic_version VALUES ('0001')")
    finally:
        admin.close()
    settings_ = make_settings(
        tmp_path,
        database_url=mysql_url(mysql_database),
        database_fallback="never",
        better_auth_secret=TEST_SECRET,
    )
    with running_app(settings_) as (_, client):
        wait_ready(client)
        response = client.post("/api/alice/tasks", json={"title": "Buy 🥛"}, headers=ALICE)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "DATA_REJECTED"
        fine = client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=ALICE)
        assert fine.status_code == 201
        state = client.get("/config/database").json()["connection_state"]
        assert state == "PRIMARY_CONNECTED"
