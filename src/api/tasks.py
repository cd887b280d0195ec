"""Task endpoints under `/api/{user_id}/tasks` (bearer JWT; the path's user must be
the token's). Routes only translate HTTP; queries live in src.services.tasks.

Each route is `async` and reads its request itself (src.api.task_requests: FastAPI's
parameter resolution cost more than the rest of a request); the OpenAPI document is
given the same parameters and bodies through `openapi_extra`. The database work runs as
one unit (src.database.transactions). Responses are serialised once, straight to bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from src.api.dependencies import get_database
from src.api.task_requests import authorized_user, json_body, list_query, operation, request_body
from src.http.errors import error_responses
from src.models.task import TaskRecord, TaskStatus
from src.schemas.tasks import TaskCompletion, TaskCreate, TaskRead, TaskUpdate
from src.services import tasks as service
from src.services.errors import TaskNotFound

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_JSON = "application/json"
_COMPLETED = TaskStatus.COMPLETED.value

router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["tasks"],
    responses=error_responses(400, 401, 403, 500, 503),
)
_TOTAL_HEADER = {
    "X-Total-Count": {
        "description": "How many tasks match the filter, across all pages.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _task_id(raw: str) -> str:
    """Ids are lowercase UUIDs; anything else cannot exist, so it is a 404 without a query."""
    if not _UUID.match(raw):
        raise TaskNotFound()
    return raw.lower()


def _json(
    content: bytes, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(content, status_code, headers, media_type=_JSON)


def _document(record: TaskRecord) -> dict[str, Any]:
    """A stored task in the TaskRead shape (the documented response model).

    Records come from our own table, already valid, so they skip a validation pass:
    validating and re-serialising 50 rows through pydantic cost more than the query.
    tests/test_http_contract.py checks the output against TaskRead.
    """
    return {
        "id": record.id,
        "title": record.title,
        "description": record.description,
        "status": record.status,
        "completed": record.status == _COMPLETED,
        "user_id": record.user_id,
        "created_at": record.created_at.isoformat(timespec="microseconds"),
        "updated_at": record.updated_at.isoformat(timespec="microseconds"),
    }


def _listed(task: service.ListedTask) -> dict[str, Any]:
    """A listed task in the TaskRead shape (its timestamps are ISO text already)."""
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "completed": task.status == _COMPLETED,
        "user_id": task.user_id,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _one(record: TaskRecord, status_code: int = 200, **headers: str) -> Response:
    return _json(_encode(_document(record)), status_code, headers or None)


@router.get(
    "",
    summary="List tasks, newest first",
    response_model=list[TaskRead],
    responses={200: {"headers": _TOTAL_HEADER}},
    openapi_extra=operation(listing=True),
)
async def list_tasks(request: Request) -> Response:
    user_id = await authorized_user(request)
    status, limit, offset = list_query(request)
    db = await get_database(request)
    page = await db.read(service.list_tasks, user_id, status, limit, offset)
    body = _encode([_listed(task) for task in page.items])
    return _json(body, headers={"X-Total-Count": str(page.total)})


@router.post(
    "",
    status_code=201,
    summary="Create a task",
    response_model=TaskRead,
    responses={
        201: {
            "headers": {
                "Location": {
                    "description": "The new task's URL.",
                    "required": True,
                    "schema": {"type": "string"},
                }
            }
        },
        **error_responses(413),
    },
    openapi_extra=operation(body=request_body(TaskCreate)),
)
async def create_task(request: Request) -> Response:
    user_id = await authorized_user(request)
    body = await json_body(request, TaskCreate)
    assert body is not None
    db = await get_database(request)
    new = service.new_task(
        user_id, body.title, body.description, body.state() or TaskStatus.PENDING.value
    )
    record = await db.write_one(service.create_task, new)
    location = f"/api/{quote(user_id, safe='')}/tasks/{record.id}"
    return _one(record, 201, Location=location)


@router.get(
    "/{task_id}",
    summary="Get a task",
    response_model=TaskRead,
    responses=error_responses(404),
    openapi_extra=operation(task_id=True),
)
async def get_task(request: Request) -> Response:
    user_id = await authorized_user(request)
    task_id = _task_id(request.path_params["task_id"])
    db = await get_database(request)
    record = await db.read(service.get_task, user_id, task_id)
    return _one(record)


@router.put(
    "/{task_id}",
    summary="Change a task's title, description and/or state",
    response_model=TaskRead,
    responses=error_responses(404, 413),
    openapi_extra=operation(task_id=True, body=request_body(TaskUpdate)),
)
async def update_task(request: Request) -> Response:
    user_id = await authorized_user(request)
    body = await json_body(request, TaskUpdate)
    assert body is not None
    task_id = _task_id(request.path_params["task_id"])
    db = await get_database(request)
    # Absolute values: applying them twice (a retry after a lost connection) is harmless.
    record = await db.write_idempotent(service.update_task, user_id, task_id, body.changes())
    return _one(record)


@router.delete(
    "/{task_id}",
    status_code=204,
    summary="Delete a task",
    response_class=Response,
    responses=error_responses(404),
    openapi_extra=operation(task_id=True),
)
async def delete_task(request: Request) -> Response:
    user_id = await authorized_user(request)
    task_id = _task_id(request.path_params["task_id"])
    db = await get_database(request)
    await db.write_one(service.delete_task, user_id, task_id)
    return Response(status_code=204)


@router.patch(
    "/{task_id}/complete",
    summary="Mark complete or pending; without a body, toggle",
    response_model=TaskRead,
    responses=error_responses(404, 413),
    openapi_extra=operation(task_id=True, body=request_body(TaskCompletion, required=False)),
)
async def complete_task(request: Request) -> Response:
    user_id = await authorized_user(request)
    body = await json_body(request, TaskCompletion, required=False)
    task_id = _task_id(request.path_params["task_id"])
    db = await get_database(request)
    completed = body.completed if body is not None else None
    # Setting a value is idempotent; a toggle is not, so it is never run twice.
    run = db.write if completed is None else db.write_idempotent
    record = await run(service.set_completion, user_id, task_id, completed)
    return _one(record)
