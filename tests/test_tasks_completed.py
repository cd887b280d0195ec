"""The boolean `completed` beside `status`: in every task, accepted on input, a list
filter, documented. (Frontends written for this API family use the boolean.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET, bearer, make_settings, running_app, wait_ready

ALICE = bearer("alice")
TASKS = "/api/alice/tasks"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with running_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET)) as (_, client):
        wait_ready(client)
        yield client


def consistent(task: dict[str, Any]) -> dict[str, Any]:
    assert task["completed"] is (task["status"] == "completed"), task
    return task


def test_every_representation_carries_a_consistent_completed(client: TestClient) -> None:
    created = consistent(client.post(TASKS, json={"title": "a"}, headers=ALICE).json())
    assert created["completed"] is False
    url = f"{TASKS}/{created['id']}"
    toggled = consistent(client.patch(f"{url}/complete", headers=ALICE).json())
    assert toggled["completed"] is True
    assert consistent(client.get(url, headers=ALICE).json()) == toggled
    for task in client.get(TASKS, headers=ALICE).json():
        consistent(task)
    renamed = consistent(client.put(url, json={"title": "b"}, headers=ALICE).json())
    assert renamed["completed"] is True
    unset = client.patch(f"{url}/complete", json={"completed": False}, headers=ALICE)
    assert consistent(unset.json())["completed"] is False


def test_the_state_is_accepted_either_way_on_create_and_update(client: TestClient) -> None:
    for body, status in (
        ({"completed": True}, "completed"),
        ({"completed": False}, "pending"),
        ({"status": "completed"}, "completed"),
        ({"status": "pending"}, "pending"),
        ({"status": "completed", "completed": True}, "completed"),
        ({"status": "pending", "completed": False}, "pending"),
    ):
        response = client.post(TASKS, json={"title": "t", **body}, headers=ALICE)
        assert response.status_code == 201, (body, response.text)
        assert consistent(response.json())["status"] == status, body
    task = client.post(TASKS, json={"title": "t"}, headers=ALICE).json()
    url = f"{TASKS}/{task['id']}"
    done = consistent(client.put(url, json={"completed": True}, headers=ALICE).json())
    assert done["status"] == "completed" and done["title"] == "t"
    assert done["updated_at"] > task["updated_at"]
    back = client.put(url, json={"status": "pending", "title": "u"}, headers=ALICE)
    assert consistent(back.json())["completed"] is False
    assert client.get(url, headers=ALICE).json()["status"] == "pending"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "pending", "completed": True},
        {"status": "completed", "completed": False},
    ],
)
def test_a_contradicting_state_is_a_400(client: TestClient, body: dict[str, Any]) -> None:
    for method, url, payload in (
        ("POST", TASKS, {"title": "t", **body}),
        ("PUT", f"{TASKS}/{_task_id(client)}", body),
    ):
        response = client.request(method, url, json=payload, headers=ALICE)
        assert response.status_code == 400, (method, response.text)
        error = response.json()
        assert error["code"] == "VALIDATION_ERROR"
        assert "disagree" in error["error"]
        assert error["details"]["fields"]


def _task_id(client: TestClient) -> str:
    task_id: str = client.post(TASKS, json={"title": "x"}, headers=ALICE).json()["id"]
    return task_id


def test_completed_filters_the_list_like_status(client: TestClient) -> None:
    for n in range(5):
        client.post(TASKS, json={"title": f"t{n}", "completed": n < 2}, headers=ALICE)

    def listed(query: str) -> tuple[list[str], str]:
        response = client.get(f"{TASKS}?{query}", headers=ALICE)
        assert response.status_code == 200, (query, response.text)
        return [t["id"] for t in response.json()], response.headers["x-total-count"]

    assert listed("completed=true") == listed("status=completed")
    assert listed("completed=false") == listed("status=pending")
    assert listed("completed=true")[1] == "2" and listed("completed=false")[1] == "3"
    assert listed("completed=true&status=completed") == listed("status=completed")
    assert listed("completed=false&status=all") == listed("status=pending")
    assert listed("completed=true&limit=1")[1] == "2"
    for query in ("completed=true&status=pending", "completed=false&status=completed"):
        response = client.get(f"{TASKS}?{query}", headers=ALICE)
        assert response.status_code == 400, query
        body = response.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert body["details"]["fields"][0]["field"] == "completed"
    bad = client.get(f"{TASKS}?completed=maybe", headers=ALICE)
    assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"


def test_completed_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    read = components["TaskRead"]
    assert read["properties"]["completed"]["type"] == "boolean"
    assert "completed" in read["required"]
    for name in ("TaskCreate", "TaskUpdate"):
        body = components[name]
        assert body["properties"]["completed"]["type"] == "boolean", name
        assert set(body["properties"]["status"]["enum"]) == {"pending", "completed"}, name
        assert "not" in body, name  # the disagreeing combinations
    parameters = schema["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
    query = next(p for p in parameters if p["name"] == "query")["schema"]
    assert query["properties"]["completed"]["type"] == "boolean"
    assert "not" in query  # status and completed disagreeing


def test_a_null_never_toggles(client: TestClient) -> None:
    """PATCH …/complete took a `null` body, and `{"completed": null}`, as no body and
    toggled, while PUT and POST refused the same nulls."""
    task = client.post(TASKS, json={"title": "t"}, headers=ALICE).json()
    url = f"{TASKS}/{task['id']}"
    json_headers = {**ALICE, "Content-Type": "application/json"}
    refused = {
        body: client.patch(f"{url}/complete", content=body, headers=json_headers)
        for body in (b"null", b'{"completed": null}')
    }
    # The same 400s as the other routes give for the same nulls.
    same = {
        b"null": client.post(TASKS, content=b"null", headers=json_headers),
        b'{"completed": null}': client.put(
            url, content=b'{"completed": null}', headers=json_headers
        ),
    }
    for body, response in refused.items():
        assert response.status_code == 400, (body, response.text)
        assert response.json() == same[body].json(), body
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert response.json()["details"]["fields"], body
    assert client.get(url, headers=ALICE).json() == task  # not flipped, not touched
    # No body and `{}` still toggle.
    assert client.patch(f"{url}/complete", headers=ALICE).json()["completed"] is True
    toggled = client.patch(f"{url}/complete", content=b"{}", headers=json_headers)
    assert toggled.json()["completed"] is False


def test_the_completion_body_is_documented_without_null(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/{user_id}/tasks/{task_id}/complete"]["patch"]
    body = operation["requestBody"]
    assert body["required"] is False  # no body: toggle
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskCompletion"
    }
    completion = schema["components"]["schemas"]["TaskCompletion"]
    assert completion["properties"]["completed"]["type"] == "boolean"
    assert "anyOf" not in completion["properties"]["completed"]
