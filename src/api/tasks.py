"""Task endpoints under `/api/{user_id}/tasks` (bearer JWT; the path's user must be
the token's). Routes only translate HTTP; queries live in src.services.tasks.

Each route is `async`: authentication runs on the event loop and the whole database
transaction runs in one thread-pool hop (src.database.transactions). Responses are
serialised once, straight to bytes.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Response

from src.api.dependencies import DatabaseDep
from src.auth.dependencies import AuthorizedUserDep
from src.http.errors import ApiError, error_responses
from src.http.json_body import StrictJsonRoute
from src.models.task import TaskRecord, TaskStatus
from src.schemas.task_query import LIMIT_MAX, LIST_QUERY_PARAMETER, MAX_OFFSET
from src.schemas.tasks import (
    StatusFilter,
    TaskCompletion,
    TaskCreate,
    TaskRead,
    TaskUpdate,
    status_of_completed,
)
from src.services import tasks as service
from src.services.errors import TaskNotFound

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_JSON = "application/json"
_COMPLETED = TaskStatus.COMPLETED.value

router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["tasks"],
    responses=error_responses(400, 401, 403, 500, 503),
    route_class=StrictJsonRoute,
)

# Parsed one by one; documented together as LIST_QUERY_PARAMETER (see there why).
StatusQuery = Annotated[StatusFilter, Query(include_in_schema=False)]
CompletedQuery = Annotated[bool | None, Query(include_in_schema=False)]
LimitQuery = Annotated[int, Query(ge=1, le=LIMIT_MAX, include_in_schema=False)]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET, include_in_schema=False)]
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


def _status_filter(status: StatusFilter, completed: bool | None) -> StatusFilter:
    if completed is None:
        return status
    wanted = status_of_completed(completed)
    if status not in ("all", wanted):
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"The request is invalid: status={status} and completed={str(completed).lower()} "
            "disagree; give one of them.",
            details={
                "fields": [
                    {
                        "field": "completed",
                        "message": f"disagrees with status={status}",
                        "type": "value_error",
                        "input": completed,
                    }
                ]
            },
        )
    return wanted


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
    openapi_extra={"parameters": [LIST_QUERY_PARAMETER]},
)
async def list_tasks(
    user_id: AuthorizedUserDep,
    db: DatabaseDep,
    status: StatusQuery = "all",
    completed: CompletedQuery = None,
    limit: LimitQuery = 100,
    offset: OffsetQuery = 0,
) -> Response:
    status = _status_filter(status, completed)
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
)
async def create_task(user_id: AuthorizedUserDep, db: DatabaseDep, body: TaskCreate) -> Response:
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
)
async def get_task(user_id: AuthorizedUserDep, task_id: str, db: DatabaseDep) -> Response:
    record = await db.read(service.get_task, user_id, _task_id(task_id))
    return _one(record)


@router.put(
    "/{task_id}",
    summary="Change a task's title, description and/or state",
    response_model=TaskRead,
    responses=error_responses(404, 413),
)
async def update_task(
    user_id: AuthorizedUserDep, task_id: str, db: DatabaseDep, body: TaskUpdate
) -> Response:
    # Absolute values: applying them twice (a retry after a lost connection) is harmless.
    record = await db.write_idempotent(
        service.update_task, user_id, _task_id(task_id), body.changes()
    )
    return _one(record)


@router.delete(
    "/{task_id}",
    status_code=204,
    summary="Delete a task",
    response_class=Response,
    responses=error_responses(404),
)
async def delete_task(user_id: AuthorizedUserDep, task_id: str, db: DatabaseDep) -> Response:
    await db.write_one(service.delete_task, user_id, _task_id(task_id))
    return Response(status_code=204)


@router.patch(
    "/{task_id}/complete",
    summary="Mark complete or pending; without a body, toggle",
    response_model=TaskRead,
    responses=error_responses(404, 413),
)
async def complete_task(
    user_id: AuthorizedUserDep,
    task_id: str,
    db: DatabaseDep,
    body: Annotated[TaskCompletion | None, Body()] = None,
) -> Response:
    completed = body.completed if body is not None else None
    # Setting a value is idempotent; a toggle is not, so it is never run twice.
    run = db.write if completed is None else db.write_idempotent
    record = await run(service.set_completion, user_id, _task_id(task_id), completed)
    return _one(record)
