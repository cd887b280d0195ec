"""What every response looks like: the error body, status codes, headers, CORS, and
the OpenAPI document."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from src.application import create_app
from tests.conftest import TEST_SECRET, bearer, make_settings, running_app, wait_ready

ALICE = bearer("alice")


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    with running_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET)) as (app, client):
        wait_ready(client)
        yield app, client


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) <= {"error", "code", "details"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code, body
    return body


def test_every_error_has_the_common_shape(app_client: tuple[FastAPI, TestClient]) -> None:
    _, client = app_client
    assert_error(client.get("/nope"), 404, "NOT_FOUND")
    assert_error(client.get("/api/alice/tasks/x/y/z", headers=ALICE), 404, "NOT_FOUND")
    assert_error(client.post("/health"), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.patch("/api/alice/tasks", headers=ALICE), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.delete("/api/alice/tasks", headers=ALICE), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.get("/api/alice/tasks"), 401, "UNAUTHORIZED")
    assert_error(client.get("/api/bob/tasks", headers=ALICE), 403, "FORBIDDEN")
    missing = f"/api/alice/tasks/{uuid.uuid4()}"
    assert_error(client.get(missing, headers=ALICE), 404, "TASK_NOT_FOUND")
    body = assert_error(
        client.post(
            "/api/alice/tasks",
            content=b"{oops",
            headers={**ALICE, "content-type": "application/json"},
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert body["details"]["fields"][0]["field"] == "body"
    body = assert_error(
        client.post("/api/alice/tasks", json={"title": ""}, headers=ALICE), 400, "VALIDATION_ERROR"
    )
    assert body["details"]["fields"][0]["field"] == "title"
    assert "title" in body["error"]


def test_a_malformed_user_id_is_explained_in_words(
    app_client: tuple[FastAPI, TestClient],
) -> None:
    """`/api/%20alice/tasks` answered `path.user_id: String should match pattern '^(?:[^\\t-…`
    (about 300 characters of regex)."""
    _, client = app_client
    for path in ("/api/%20alice/tasks", "/api/alice%09/tasks", "/api/a%01b/tasks"):
        body = assert_error(client.get(path, headers=ALICE), 400, "VALIDATION_ERROR")
        rule = "must be 1 to 255 characters, without surrounding whitespace, control characters"
        assert f"path.user_id: {rule} or '/'" in body["error"], body
        assert "pattern" not in body["error"] and "\\" not in body["error"], body
        assert body["details"]["fields"][0]["message"].startswith(rule)
        assert len(body["error"]) < 200


def test_no_pattern_is_ever_quoted_in_an_error(tmp_path: Path) -> None:
    """Any field checked by a regex: the 400 never shows the regex."""
    app = create_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET))

    @app.get("/coded")
    async def coded(code: Annotated[str, Query(pattern=r"^[A-Z]{3}-\d{4}$")]) -> str:
        return code

    with TestClient(app) as client:
        body = assert_error(client.get("/coded?code=abc"), 400, "VALIDATION_ERROR")
    assert "A-Z" not in body["error"] and "pattern" not in body["error"], body
    assert body["details"]["fields"][0]["field"] == "query.code"


def test_oversized_bodies_are_413(app_client: tuple[FastAPI, TestClient]) -> None:
    _, client = app_client
    headers = {**ALICE, "content-type": "application/json"}
    big = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    assert_error(
        client.post("/api/alice/tasks", content=big, headers=headers), 413, "PAYLOAD_TOO_LARGE"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"title": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}'

    assert_error(
        client.post("/api/alice/tasks", content=chunks(), headers=headers), 413, "PAYLOAD_TOO_LARGE"
    )
    # Just under the limit is an ordinary validation question.
    near = b'{"title": "t", "description": "' + b"d" * (60 * 1024) + b'"}'
    assert_error(
        client.post("/api/alice/tasks", content=near, headers=headers), 400, "VALIDATION_ERROR"
    )
    # Unauthenticated oversized bodies are refused just the same.
    too_large = client.post("/api/alice/tasks", content=big)
    assert too_large.status_code == 413
    assert too_large.content.startswith(b'{"error":"')  # compact, as every error body


def test_unexpected_errors_are_opaque_500s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail: /srv/secret/path")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-500-check"})
    body = assert_error(response, 500, "INTERNAL_ERROR")
    assert body["details"] == {"request_id": "req-500-check"}
    assert response.headers["x-request-id"] == "req-500-check"
    assert "internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "internal detail: /srv/secret/path" in caplog.text  # the traceback is in the log


def test_database_unavailable_is_503(tmp_path: Path, refused_port: int) -> None:
    settings = make_settings(
        tmp_path,
        better_auth_secret=TEST_SECRET,
        database_url=f"postgresql://u:pw@127.0.0.1:{refused_port}/app",
        database_fallback="never",
        database_connect_timeout=0.5,
        database_startup_retries=1,
    )
    with running_app(settings) as (_, client):
        for path in ("/api/alice/tasks", f"/api/alice/tasks/{uuid.uuid4()}"):
            response = client.get(path, headers=ALICE)
            body = assert_error(response, 503, response.json().get("code", "?"))
            assert body["code"] in ("DATABASE_UNAVAILABLE", "DATABASE_STARTING")
            assert int(response.headers["retry-after"]) >= 1
        response = client.post("/api/alice/tasks", json={"title": "t"}, headers=ALICE)
        assert response.status_code == 503
        # Auth is still checked first, without the database.
        assert client.get("/api/alice/tasks").status_code == 401


def test_security_and_request_id_headers(app_client: tuple[FastAPI, TestClient]) -> None:
    _, client = app_client
    for response in (
        client.get("/api/alice/tasks", headers=ALICE),
        client.get("/api/alice/tasks"),
        client.get("/nope"),
        client.post("/api/alice/tasks", json={"title": "t"}, headers=ALICE),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"]
        assert "x-frame-options" not in response.headers
        assert len(response.headers["x-request-id"]) >= 16
    echoed = client.get("/api/alice/tasks", headers={**ALICE, "X-Request-ID": "abc-123.x:y"})
    assert echoed.headers["x-request-id"] == "abc-123.x:y"
    # Something unsafe is replaced, never echoed.
    replaced = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    first = client.get("/health").headers["x-request-id"]
    assert client.get("/health").headers["x-request-id"] != first


def test_cors_default_allows_any_origin_without_credentials(
    app_client: tuple[FastAPI, TestClient],
) -> None:
    _, client = app_client
    origin = "https://my-frontend.vercel.app"
    preflight = client.options(
        "/api/alice/tasks",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in preflight.headers

    listed = client.get("/api/alice/tasks", headers={**ALICE, "Origin": origin})
    assert listed.headers["access-control-allow-origin"] == "*"
    exposed = listed.headers["access-control-expose-headers"].lower()
    assert "x-total-count" in exposed and "x-request-id" in exposed
    # Errors carry the CORS headers too, so the browser lets the frontend read them.
    refused = client.get("/api/alice/tasks", headers={"Origin": origin})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"


def test_cors_origins_list(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        better_auth_secret=TEST_SECRET,
        cors_origins="https://a.example, https://b.example",
    )
    with running_app(settings) as (_, client):
        wait_ready(client)
        ok = client.options(
            "/api/alice/tasks",
            headers={"Origin": "https://b.example", "Access-Control-Request-Method": "GET"},
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://b.example"
        assert ok.text == "OK"
        evil = client.options(
            "/api/alice/tasks",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in evil.headers
        simple = client.get("/api/alice/tasks", headers={**ALICE, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


def test_a_refused_preflight_is_a_json_error_saying_what_was_refused(tmp_path: Path) -> None:
    """Starlette answered `400 text/plain "Disallowed CORS origin"`."""
    settings = make_settings(
        tmp_path, better_auth_secret=TEST_SECRET, cors_origins="https://my-app.example"
    )
    with running_app(settings) as (_, client):
        refused = client.options(
            "/api/alice/tasks",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "X-Request-ID": "preflight-1",
            },
        )
        body = assert_error(refused, 400, "CORS_NOT_ALLOWED")
        assert "origin https://evil.example is not allowed" in body["error"]
        assert "CORS_ORIGINS" in body["error"]
        assert "access-control-allow-origin" not in refused.headers
        assert refused.headers["x-request-id"] == "preflight-1"
        assert refused.headers["cache-control"] == "no-store"
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert refused.headers["referrer-policy"]
        assert int(refused.headers["content-length"]) == len(refused.content)

        # An allowed origin asking for a method that is not allowed: the method is named.
        method = client.options(
            "/api/alice/tasks",
            headers={"Origin": "https://my-app.example", "Access-Control-Request-Method": "TRACE"},
        )
        body = assert_error(method, 400, "CORS_NOT_ALLOWED")
        assert "method TRACE is not allowed" in body["error"]
        assert "origin" not in body["error"]

        both = client.options(
            "/api/alice/tasks",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "TRACE"},
        )
        body = assert_error(both, 400, "CORS_NOT_ALLOWED")
        assert "https://evil.example" in body["error"] and "TRACE" in body["error"]

        # An accepted preflight is Starlette's, with the headers of every response.
        ok = client.options(
            "/api/alice/tasks",
            headers={"Origin": "https://my-app.example", "Access-Control-Request-Method": "POST"},
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://my-app.example"
        assert len(ok.headers["x-request-id"]) >= 16
        assert ok.headers["x-content-type-options"] == "nosniff"


TASK_OPERATIONS = {
    ("/api/{user_id}/tasks", "get"): {400, 401, 403, 500, 503},
    ("/api/{user_id}/tasks", "post"): {400, 401, 403, 413, 500, 503},
    ("/api/{user_id}/tasks/{task_id}", "get"): {400, 401, 403, 404, 500, 503},
    ("/api/{user_id}/tasks/{task_id}", "put"): {400, 401, 403, 404, 413, 500, 503},
    ("/api/{user_id}/tasks/{task_id}", "delete"): {400, 401, 403, 404, 500, 503},
    ("/api/{user_id}/tasks/{task_id}/complete", "patch"): {400, 401, 403, 404, 413, 500, 503},
}


def test_openapi_documents_endpoints_errors_and_bearer_auth(
    app_client: tuple[FastAPI, TestClient],
) -> None:
    _, client = app_client
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerAuth"]["type"] == "http"
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["BearerAuth"]["bearerFormat"] == "JWT"
    error_ref = "#/components/schemas/ErrorResponse"
    error_schema = schema["components"]["schemas"]["ErrorResponse"]
    assert {"error", "code", "details"} <= set(error_schema["properties"])
    assert set(error_schema["required"]) == {"error", "code"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]

    for (path, method), statuses in TASK_OPERATIONS.items():
        operation = schema["paths"][path][method]
        assert operation["security"] == [{"BearerAuth": []}], (path, method)
        responses = operation["responses"]
        assert "422" not in responses, (path, method)
        for status in statuses:
            content = responses[str(status)]["content"]["application/json"]["schema"]
            assert content == {"$ref": error_ref}, (path, method, status)
        assert responses[str(status)]["description"]
    task_ref = "#/components/schemas/TaskRead"
    list_op = schema["paths"]["/api/{user_id}/tasks"]["get"]
    ok = list_op["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["items"]["$ref"] == task_ref
    assert "X-Total-Count" in ok["headers"]
    # The query parameters as one exploded form object (status and completed must agree).
    assert {p["name"] for p in list_op["parameters"]} == {"user_id", "query"}
    query = next(p for p in list_op["parameters"] if p["name"] == "query")
    assert (query["in"], query["style"], query["explode"]) == ("query", "form", True)
    assert set(query["schema"]["properties"]) == {"status", "completed", "limit", "offset"}
    create_op = schema["paths"]["/api/{user_id}/tasks"]["post"]
    assert "201" in create_op["responses"]
    assert "204" in schema["paths"]["/api/{user_id}/tasks/{task_id}"]["delete"]["responses"]
    task = schema["components"]["schemas"]["TaskRead"]
    assert task["properties"]["created_at"]["format"] == "date-time"
    assert set(task["properties"]["status"]["enum"]) == {"pending", "completed"}
    assert task["properties"]["completed"]["type"] == "boolean"
    assert "completed" in task["required"]
    create_body = schema["components"]["schemas"]["TaskCreate"]
    assert create_body["additionalProperties"] is False
    # 1-255 characters once trimmed: a pattern, as maxLength would count the whitespace.
    title = create_body["properties"]["title"]
    assert "maxLength" not in title and "{0,253}" in title["pattern"], title
    docs = client.get("/docs")
    assert docs.status_code == 200


def test_request_id_reaches_the_log_line(app_client: tuple[FastAPI, TestClient]) -> None:
    from src.core.logging import TextFormatter

    _, client = app_client
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    access = logging.getLogger("src.access")
    access.addHandler(handler)
    try:
        client.get("/api/alice/tasks", headers={**ALICE, "X-Request-ID": "trace-me-42"})
        generated = client.get("/api/alice/tasks", headers=ALICE).headers["x-request-id"]
    finally:
        access.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert any("[trace-me-42]" in line and "GET /api/alice/tasks 200" in line for line in lines)
    assert any(f"[{generated}]" in line for line in lines)


def test_task_bodies_match_the_documented_model(app_client: tuple[FastAPI, TestClient]) -> None:
    from src.schemas.tasks import TaskRead

    _, client = app_client
    created = client.post(
        "/api/alice/tasks",
        json={"title": " Café 学习 👩🏽‍💻 ", "description": None},
        headers=bearer(),
    )
    assert created.status_code == 201
    listed = client.get("/api/alice/tasks", headers=bearer())
    for body in (created.json(), *listed.json()):
        assert set(body) == set(TaskRead.model_fields)
        TaskRead.model_validate(body)
        assert body["created_at"].endswith("+00:00")
    assert created.json()["title"] == "Café 学习 👩🏽‍💻"
    # Non-ASCII travels as UTF-8, not \\u escapes.
    assert "学习".encode() in created.content
