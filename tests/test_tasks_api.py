"""The task API through the ASGI app, identically on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import bearer

Api = tuple[FastAPI, TestClient, str]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
ALICE = bearer("alice")


def create(client: TestClient, title: str, user: str = "alice", **fields: Any) -> dict[str, Any]:
    response = client.post(
        f"/api/{user}/tasks", json={"title": title, **fields}, headers=bearer(user)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def stamp(value: str) -> datetime:
    assert ISO_UTC.match(value), value
    return datetime.fromisoformat(value)


def test_crud_round_trip(backend_app: Api) -> None:
    _, client, _ = backend_app
    response = client.post(
        "/api/alice/tasks", json={"title": "  Buy milk  ", "description": "2 litres"}, headers=ALICE
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert set(task) == {
        "id",
        "title",
        "description",
        "status",
        "completed",
        "user_id",
        "created_at",
        "updated_at",
    }
    assert uuid.UUID(task["id"]) and task["id"] == task["id"].lower()
    assert task["title"] == "Buy milk"  # trimmed
    assert task["description"] == "2 litres"
    assert task["status"] == "pending"
    assert task["user_id"] == "alice"
    assert stamp(task["created_at"]) == stamp(task["updated_at"])
    assert response.headers["location"] == f"/api/alice/tasks/{task['id']}"

    url = f"/api/alice/tasks/{task['id']}"
    assert client.get(url, headers=ALICE).json() == task
    listed = client.get("/api/alice/tasks", headers=ALICE)
    assert listed.json() == [task]
    assert listed.headers["x-total-count"] == "1"

    updated = client.put(url, json={"title": "Buy oat milk"}, headers=ALICE)
    assert updated.status_code == 200, updated.text
    after_title = updated.json()
    assert after_title["title"] == "Buy oat milk"
    assert after_title["description"] == "2 litres"
    assert after_title["created_at"] == task["created_at"]
    assert stamp(after_title["updated_at"]) > stamp(task["updated_at"])

    cleared = client.put(url, json={"description": None}, headers=ALICE).json()
    assert cleared["description"] is None
    assert cleared["title"] == "Buy oat milk"
    assert stamp(cleared["updated_at"]) > stamp(after_title["updated_at"])
    both = client.put(url, json={"title": "T", "description": "D"}, headers=ALICE).json()
    assert (both["title"], both["description"]) == ("T", "D")
    assert client.get(url, headers=ALICE).json() == both

    deleted = client.delete(url, headers=ALICE)
    assert deleted.status_code == 204
    assert deleted.content == b""
    for method in ("GET", "DELETE"):
        missing = client.request(method, url, headers=ALICE)
        assert missing.status_code == 404
        assert missing.json() == {"error": "No such task.", "code": "TASK_NOT_FOUND"}
    assert client.get("/api/alice/tasks", headers=ALICE).json() == []


UNICODE_TITLES = [
    "Crème brûlée à la façon de Noël",
    "買い物リスト：牛乳と卵",  # noqa: RUF001
    "할 일 목록",
    "👩🏽‍💻 ship it 🚀",
    "Ünïcödé ✓ ∑ ∞ — “quotes” ‘single’",  # noqa: RUF001
    "🙂" * 255,  # 255 characters of four bytes each
]


def test_unicode_round_trips_exactly(backend_app: Api) -> None:
    _, client, _ = backend_app
    created = []
    for title in UNICODE_TITLES:
        description = f"{title}\nnext line\ttab «»"
        task = create(client, title, description=description)
        assert task["title"] == title
        assert task["description"] == description
        created.append(task)
    long_description = "👩🏽‍💻é漢" * 1666  # 9 996 characters, 4-byte ones included
    body = json.dumps({"title": "long", "description": long_description}, ensure_ascii=False)
    response = client.post(
        "/api/alice/tasks",
        content=body.encode(),
        headers={**ALICE, "content-type": "application/json"},
    )
    assert response.status_code == 201, response.text
    long_id = response.json()["id"]
    for task in created:
        assert client.get(f"/api/alice/tasks/{task['id']}", headers=ALICE).json() == task
    assert (
        client.get(f"/api/alice/tasks/{long_id}", headers=ALICE).json()["description"]
        == long_description
    )
    listed = {t["id"]: t for t in client.get("/api/alice/tasks", headers=ALICE).json()}
    for task in created:
        assert listed[task["id"]] == task
    # Unicode in the user id too (percent-encoded in the path).
    user = "ñandú-用户-🙂"
    task = create(client, "mine", user=user)
    assert task["user_id"] == user
    assert client.get(f"/api/{user}/tasks", headers=bearer(user)).json() == [task]


def test_status_filters_and_counts(backend_app: Api) -> None:
    _, client, _ = backend_app
    ids = [create(client, f"task {i}")["id"] for i in range(5)]
    for task_id in ids[:2]:
        response = client.patch(
            f"/api/alice/tasks/{task_id}/complete", json={"completed": True}, headers=ALICE
        )
        assert response.json()["status"] == "completed"
    expected = {"all": 5, "pending": 3, "completed": 2}
    for status, count in expected.items():
        response = client.get(f"/api/alice/tasks?status={status}", headers=ALICE)
        assert response.status_code == 200
        tasks = response.json()
        assert len(tasks) == count
        assert response.headers["x-total-count"] == str(count)
        if status != "all":
            assert {t["status"] for t in tasks} == {status}
    assert len(client.get("/api/alice/tasks", headers=ALICE).json()) == 5
    # A filtered page that is full still reports the filtered total.
    page = client.get("/api/alice/tasks?status=pending&limit=2", headers=ALICE)
    assert len(page.json()) == 2
    assert page.headers["x-total-count"] == "3"


def test_pagination_newest_first_and_bounds(backend_app: Api) -> None:
    _, client, _ = backend_app
    created = [create(client, f"task {i}")["id"] for i in range(7)]
    pages = []
    for offset in (0, 3, 6):
        response = client.get(f"/api/alice/tasks?limit=3&offset={offset}", headers=ALICE)
        assert response.status_code == 200
        assert response.headers["x-total-count"] == "7"
        pages.append(response.json())
    assert [len(p) for p in pages] == [3, 3, 1]
    ordered = [t for page in pages for t in page]
    assert [t["id"] for t in ordered] == list(reversed(created))
    keys = [(stamp(t["created_at"]), t["id"]) for t in ordered]
    assert keys == sorted(keys, reverse=True)
    # Stable: the same page twice is the same page.
    again = client.get("/api/alice/tasks?limit=3&offset=3", headers=ALICE).json()
    assert again == pages[1]
    beyond = client.get("/api/alice/tasks?offset=50", headers=ALICE)
    assert beyond.json() == []
    assert beyond.headers["x-total-count"] == "7"
    edge = client.get("/api/alice/tasks?limit=100&offset=1000000", headers=ALICE)
    assert edge.status_code == 200
    assert edge.json() == []
    assert len(client.get("/api/alice/tasks?limit=1", headers=ALICE).json()) == 1

    for query in (
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=" + "9" * 30,
        "limit=abc",
        "limit=1.5",
        "offset=-1",
        "offset=1000001",
        "offset=" + "9" * 30,
        "status=done",
        "status=",
    ):
        response = client.get(f"/api/alice/tasks?{query}", headers=ALICE)
        assert response.status_code == 400, (query, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR"


def test_toggle_and_idempotent_set(backend_app: Api) -> None:
    _, client, _ = backend_app
    task = create(client, "toggle me")
    url = f"/api/alice/tasks/{task['id']}/complete"

    toggled = client.patch(url, headers=ALICE)
    assert toggled.status_code == 200, toggled.text
    assert toggled.json()["status"] == "completed"
    assert stamp(toggled.json()["updated_at"]) > stamp(task["updated_at"])
    back = client.patch(url, headers=ALICE).json()
    assert back["status"] == "pending"
    # `{}` toggles too (`null`s are refused: test_tasks_completed.py).
    assert client.patch(url, json={}, headers=ALICE).json()["status"] == "completed"
    assert client.patch(url, headers=ALICE).json()["status"] == "pending"

    first = client.patch(url, json={"completed": True}, headers=ALICE).json()
    second = client.patch(url, json={"completed": True}, headers=ALICE).json()
    assert first["status"] == second["status"] == "completed"
    assert second == first  # nothing changed, not even updated_at
    pending = client.patch(url, json={"completed": False}, headers=ALICE).json()
    assert pending["status"] == "pending"
    assert client.patch(url, json={"completed": False}, headers=ALICE).json() == pending
    assert client.get(f"/api/alice/tasks/{task['id']}", headers=ALICE).json() == pending

    for bad in ({"completed": "yes"}, {"completed": 1}, {"completed": True, "x": 1}, [True]):
        response = client.patch(url, json=bad, headers=ALICE)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR"


def test_users_are_isolated(backend_app: Api) -> None:
    _, client, backend = backend_app
    mine = create(client, "alice's secret plan")
    theirs = create(client, "bob's task", user="bob")
    bob = bearer("bob")

    # Another user's path: 403, whatever the operation.
    for method, path, body in [
        ("GET", "/api/alice/tasks", None),
        ("POST", "/api/alice/tasks", {"title": "sneaky"}),
        ("GET", f"/api/alice/tasks/{mine['id']}", None),
        ("PUT", f"/api/alice/tasks/{mine['id']}", {"title": "pwned"}),
        ("PATCH", f"/api/alice/tasks/{mine['id']}/complete", None),
        ("DELETE", f"/api/alice/tasks/{mine['id']}", None),
    ]:
        response = client.request(method, path, json=body, headers=bob)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "FORBIDDEN"

    # Another user's task through one's own path: indistinguishable from a missing one.
    missing_id = str(uuid.uuid4())
    for task_id in (mine["id"], missing_id):
        for method, suffix, body in [
            ("GET", "", None),
            ("PUT", "", {"title": "pwned"}),
            ("PATCH", "/complete", None),
            ("PATCH", "/complete", {"completed": True}),
            ("DELETE", "", None),
        ]:
            response = client.request(
                method, f"/api/bob/tasks/{task_id}{suffix}", json=body, headers=bob
            )
            assert response.status_code == 404, (method, suffix, response.text)
            assert response.json() == {"error": "No such task.", "code": "TASK_NOT_FOUND"}

    assert client.get(f"/api/alice/tasks/{mine['id']}", headers=ALICE).json() == mine
    assert client.get("/api/alice/tasks", headers=ALICE).json() == [mine]
    assert client.get("/api/bob/tasks", headers=bob).json() == [theirs]

    # Ids that differ only in case (or by a trailing space, on MariaDB) are other users.
    upper = create(client, "capital A", user="Alice")
    assert client.get("/api/Alice/tasks", headers=bearer("Alice")).json() == [upper]
    assert client.get("/api/alice/tasks", headers=ALICE).json() == [mine]
    assert client.get(f"/api/Alice/tasks/{mine['id']}", headers=bearer("Alice")).status_code == 404
    assert client.get("/api/ALICE/tasks", headers=bearer("ALICE")).json() == []
    padded = client.get("/api/alice%20/tasks", headers=bearer("alice "))
    assert padded.status_code == 400, (backend, padded.text)


def test_bad_input_is_400_never_500(backend_app: Api) -> None:
    _, client, _ = backend_app
    task = create(client, "target")
    put_url = f"/api/alice/tasks/{task['id']}"
    json_headers = {**ALICE, "content-type": "application/json"}
    cases: list[tuple[str, str, bytes]] = [
        ("POST", "/api/alice/tasks", b"{not json"),
        ("POST", "/api/alice/tasks", b'{"title": "unterminated'),
        ("POST", "/api/alice/tasks", b"[]"),
        ("POST", "/api/alice/tasks", b'["title"]'),
        ("POST", "/api/alice/tasks", b'"just a string"'),
        ("POST", "/api/alice/tasks", b"null"),
        ("POST", "/api/alice/tasks", b"42"),
        ("POST", "/api/alice/tasks", b"{}"),
        ("POST", "/api/alice/tasks", b'{"title": null}'),
        ("POST", "/api/alice/tasks", b'{"title": ""}'),
        ("POST", "/api/alice/tasks", b'{"title": "   \\t\\n "}'),
        ("POST", "/api/alice/tasks", json.dumps({"title": "x" * 256}).encode()),
        ("POST", "/api/alice/tasks", b'{"title": 123}'),
        ("POST", "/api/alice/tasks", b'{"title": true}'),
        ("POST", "/api/alice/tasks", b'{"title": ["a"]}'),
        ("POST", "/api/alice/tasks", b'{"title": {"a": 1}}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "description": 5}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "status": "done"}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "status": "pending", "completed": true}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "completed": "true"}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "completed": null}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "user_id": "bob"}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "id": "x"}'),
        ("POST", "/api/alice/tasks", b'{"title": "nul \\u0000 inside"}'),
        ("POST", "/api/alice/tasks", b'{"title": "lone \\ud83d surrogate"}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "description": "nul \\u0000"}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "description": "\\udc00"}'),
        ("POST", "/api/alice/tasks", b'{"title": "ok", "\\ud800": 1}'),
        ("POST", "/api/alice/tasks", json.dumps({"title": "ok", "k" * 5000: 1}).encode()),
        (
            "POST",
            "/api/alice/tasks",
            json.dumps({"title": "ok", "description": "d" * 10_001}).encode(),
        ),
        ("PUT", put_url, b"{}"),
        ("PUT", put_url, b'{"title": null}'),
        ("PUT", put_url, b'{"title": " "}'),
        ("PUT", put_url, b'{"title": "ok", "completed": true, "status": "pending"}'),
        ("PUT", put_url, b'{"status": null}'),
        ("PUT", put_url, json.dumps({"description": "d" * 10_001}).encode()),
        ("PUT", put_url, b"[]"),
        ("PUT", put_url, b"{bad"),
    ]
    for method, url, body in cases:
        response = client.request(method, url, content=body, headers=json_headers)
        assert response.status_code == 400, (method, body[:60], response.status_code, response.text)
        error = response.json()
        assert error["code"] == "VALIDATION_ERROR", error
        assert error["error"]
        assert isinstance(error["details"]["fields"], list), error

    # A body sent as something other than JSON.
    form = client.post(
        "/api/alice/tasks", content=b"title=x", headers={**ALICE, "content-type": "text/plain"}
    )
    assert form.status_code == 400
    # Exactly at the limits is fine.
    ok = create(client, "x" * 255, description="d" * 10_000)
    assert len(ok["title"]) == 255 and len(ok["description"]) == 10_000
    # Oversized bodies stop at the door.
    huge = client.post(
        "/api/alice/tasks",
        content=json.dumps({"title": "x", "description": "y" * 1_000_000}).encode(),
        headers=json_headers,
    )
    assert huge.status_code == 413
    assert huge.json()["code"] == "PAYLOAD_TOO_LARGE"
    # Bad path values.
    for path in ("/api/" + "u" * 256 + "/tasks", "/api/%20alice/tasks", "/api/a%00b/tasks"):
        response = client.get(path, headers=ALICE)
        assert response.status_code in (400, 403), (path, response.text)
        assert response.status_code != 500
    # Nothing was stored by any of it.
    assert client.get("/api/alice/tasks", headers=ALICE).headers["x-total-count"] == "2"


def test_a_body_not_sent_as_a_json_object_says_what_to_send(backend_app: Api) -> None:
    _, client, _ = backend_app
    body = b'{"title": "Buy milk"}'
    cases = [
        ({"content-type": "text/plain"}, body, "Content-Type is not application/json"),
        ({}, body, "the request has no Content-Type"),
        ({"content-type": "application/json"}, b'["Buy milk"]', "JSON an array, not an object"),
        ({"content-type": "application/json"}, b"{title: 1}", "not valid JSON"),
    ]
    for headers, content, reason in cases:
        response = client.post("/api/alice/tasks", content=content, headers={**ALICE, **headers})
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["code"] == "VALIDATION_ERROR"
        assert reason in error["error"], error
        assert "Content-Type: application/json" in error["error"], error
        assert "valid dictionary" not in error["error"]


def test_task_ids_that_cannot_exist_are_404(backend_app: Api) -> None:
    _, client, _ = backend_app
    task = create(client, "real")
    for task_id in ("not-a-uuid", "1", "x" * 300, task["id"] + "0", "' OR 1=1 --"):
        for method in ("GET", "DELETE", "PUT"):
            body = {"title": "t"} if method == "PUT" else None
            response = client.request(
                method, f"/api/alice/tasks/{task_id}", json=body, headers=ALICE
            )
            assert response.status_code == 404, (task_id, method, response.text)
            assert response.json()["code"] == "TASK_NOT_FOUND"
    # Upper-case spelling of a real id finds it (ids are UUIDs, compared canonically).
    upper = client.get(f"/api/alice/tasks/{task['id'].upper()}", headers=ALICE)
    assert upper.status_code == 200
    assert upper.json() == task


def test_concurrent_toggles_are_not_lost(backend_app: Api) -> None:
    """Each toggle reads and writes under a row lock: an even number ends where it began."""
    from concurrent.futures import ThreadPoolExecutor

    _, client, _ = backend_app
    task = create(client, "flip")
    url = f"/api/alice/tasks/{task['id']}/complete"
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: client.patch(url, headers=ALICE).status_code, range(16)))
    assert statuses == [200] * 16
    final = client.get(f"/api/alice/tasks/{task['id']}", headers=ALICE).json()
    assert final["status"] == "pending"
    assert stamp(final["updated_at"]) > stamp(task["updated_at"])
