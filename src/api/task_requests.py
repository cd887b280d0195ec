"""Reading a task request: the bearer token, the path's user, the query and the JSON body.

The task routes take the request itself and read it here, rather than through FastAPI's
parameter and dependency resolution: measured per request, that resolution cost more than
the SQLite query and the rest of the app together. What a client sees is unchanged — the
same checks in the same order (token → path → owner → query and body), the same pydantic
models and constraints, the same `RequestValidationError`s with FastAPI's locations (so
the same 400 bodies) — and the OpenAPI document still describes every parameter and body,
from these same adapters and models (`parameters`, `request_body`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from src.auth.dependencies import bearer_token
from src.auth.user_id import USER_ID, USER_ID_RULE
from src.http.errors import ApiError
from src.http.json_body import loads_strict
from src.schemas.task_query import LIMIT_MAX, LIST_QUERY_PARAMETER, MAX_OFFSET
from src.schemas.tasks import StatusFilter, status_of_completed

M = TypeVar("M", bound=BaseModel)

USER_ID_DESCRIPTION = (
    f"The user whose tasks these are; must be the token's user. It {USER_ID_RULE}."
)
_STATUS: TypeAdapter[StatusFilter] = TypeAdapter(StatusFilter)
_COMPLETED: TypeAdapter[bool | None] = TypeAdapter(bool | None)
_LIMIT: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=1, le=LIMIT_MAX)])
_OFFSET: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=0, le=MAX_OFFSET)])
_JSON_TYPES = ("application/json",)
_SEND_JSON = "send a JSON object with Content-Type: application/json"


def _not_an_object(why: str) -> RequestValidationError:
    """A body that is not a JSON object (or not sent as JSON): FastAPI's error type, with
    words that say what to send instead of "a valid dictionary"."""
    return RequestValidationError(
        [
            {
                "type": "model_attributes_type",
                "loc": ("body",),
                "msg": f"{why}; {_SEND_JSON}",
                "input": None,
            }
        ]
    )


def _errors(error: ValidationError, *location: str | int) -> list[dict[str, Any]]:
    """pydantic's errors at FastAPI's location (`("path", "user_id", …)`)."""
    return [
        {**detail, "loc": (*location, *detail["loc"])} for detail in error.errors(include_url=False)
    ]


async def authorized_user(request: Request) -> str:
    """The path's user, which must be the bearer token's: 401, then 400 for a malformed
    path, then 403 (ApiError / RequestValidationError)."""
    current = await bearer_token(request)
    raw = request.path_params["user_id"]
    try:
        user_id = USER_ID.validate_python(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [
                {**detail, "msg": USER_ID_RULE}
                if detail["type"] == "string_pattern_mismatch"
                else detail
                for detail in _errors(error, "path", "user_id")
            ]
        ) from None
    if user_id != current:
        raise ApiError(403, "FORBIDDEN", "This token does not give access to this user's tasks.")
    return user_id


def list_query(request: Request) -> tuple[StatusFilter, int, int]:
    """`status` (or `completed`), `limit`, `offset`: the filter and the page."""
    query = request.query_params
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for name, adapter, default in (
        ("status", _STATUS, "all"),
        ("completed", _COMPLETED, None),
        ("limit", _LIMIT, 100),
        ("offset", _OFFSET, 0),
    ):
        raw = query.get(name)
        try:
            values[name] = default if raw is None else adapter.validate_python(raw)
        except ValidationError as error:
            errors += _errors(error, "query", name)
    if errors:
        raise RequestValidationError(errors)
    return _agreeing(values["status"], values["completed"]), values["limit"], values["offset"]


def _agreeing(status: StatusFilter, completed: bool | None) -> StatusFilter:
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


async def json_body(request: Request, model: type[M], *, required: bool = True) -> M | None:
    """The body as `model` (None when optional and absent; a JSON `null` is not absent):
    strict JSON (src.http.json_body), then the model's validation, each failure a
    RequestValidationError at `("body", …)`."""
    raw = await request.body()
    if not raw:
        if required:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
            )
        return None
    content_type = request.headers.get("content-type")
    if not _is_json(content_type):
        raise _not_an_object(
            "the request has no Content-Type"
            if not content_type
            else "the request's Content-Type is not application/json"
        )
    try:
        data = loads_strict(raw)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error.msg},
                }
            ]
        ) from None
    # A `null` body is refused even where the body is optional: it is not "no body", and
    # taking it as one would toggle a task whose client meant to set it.
    if not isinstance(data, dict):
        raise _not_an_object(f"the body is JSON {_json_kind(data)}, not an object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(_errors(error, "body")) from None


def _json_kind(data: object) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, list):
        return "an array"
    return "a string" if isinstance(data, str) else "a number"


def _is_json(content_type: str | None) -> bool:
    """`application/json` or any `application/…+json`, as FastAPI accepts (parameters after
    `;` aside)."""
    if not content_type:
        return False
    kind = content_type.partition(";")[0].strip().lower()
    return kind in _JSON_TYPES or (kind.startswith("application/") and kind.endswith("+json"))


# -- the OpenAPI document ------------------------------------------------------------------


def parameters(*, task_id: bool = False, listing: bool = False) -> list[dict[str, Any]]:
    """The operation's parameters, as FastAPI would document them."""
    documented: list[dict[str, Any]] = []
    if task_id:
        documented.append(
            {
                "name": "task_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "title": "Task Id"},
            }
        )
    user_schema = {**USER_ID.json_schema(), "title": "User Id"}
    user_schema["description"] = USER_ID_DESCRIPTION
    documented.append(
        {
            "name": "user_id",
            "in": "path",
            "required": True,
            "description": USER_ID_DESCRIPTION,
            "schema": user_schema,
        }
    )
    if listing:
        documented.append(LIST_QUERY_PARAMETER)
    return documented


def request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """The operation's requestBody (its schema in components, see src.http.openapi)."""
    reference: dict[str, Any] = {"$ref": f"#/components/schemas/{model.__name__}"}
    # An optional body may be left out, not sent as `null` (json_body refuses that).
    return {"content": {"application/json": {"schema": reference}}, "required": required}


def operation(
    *, task_id: bool = False, listing: bool = False, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`openapi_extra` for a task route: its parameters, body and bearer security."""
    extra: dict[str, Any] = {
        "parameters": parameters(task_id=task_id, listing=listing),
        "security": [{"BearerAuth": []}],
    }
    if body is not None:
        extra["requestBody"] = body
    return extra
