"""The one place where exceptions become HTTP responses.

Every typed failure of the layers below maps to one status and code here, and nothing
here changes any state: the database layer has already told its manager what it saw.
Anything else is a bug: 500 `INTERNAL_ERROR` with the request id, the traceback only in
the log (src.http.middleware is the last resort for what escapes even this).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from src.database.errors import DatabaseError, DataRejected
from src.http.errors import STATUS_CODES, ApiError, error_response, internal_error_body
from src.services.errors import TaskNotFound

logger = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Validation details echo at most this much of a rejected value.
_MAX_DETAIL_INPUT = 80
# How pydantic words a `string_pattern_mismatch`: "String should match pattern '<regex>'".
_PYDANTIC_PATTERN = "String should match pattern"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _task_not_found(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskNotFound)
    return error_response(404, "TASK_NOT_FOUND", str(exc))


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseError)
    return error_response(503, exc.code, exc.reason, headers={"Retry-After": str(exc.retry_after)})


async def _data_rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DataRejected)
    return error_response(400, exc.code, exc.reason)


async def _unexpected_database_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("Database error during %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(internal_error_body(), 500)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    if exc.status_code == 404:
        message = f"Nothing here: {request.method} {_printable(request.url.path, 200)}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {_printable(request.url.path, 200)}"
    elif exc.status_code == 400:
        # FastAPI's "error parsing the body" (not valid UTF-8, …): still a validation error.
        code, message = "VALIDATION_ERROR", "The request body could not be read as JSON."
    else:
        message = str(exc.detail) if exc.detail else code.replace("_", " ").capitalize()
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return error_response(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route answers on this path. Starlette's own 405 names only the
    first route that matched the path (`Allow: GET` on a path that also takes POST)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [_describe_field_error(error) for error in exc.errors()]
    if any(field["type"] == "json_invalid" for field in fields):
        message = (
            "The request body is not valid JSON: send a JSON object with "
            "Content-Type: application/json."
        )
    else:
        message = "The request is invalid: " + "; ".join(
            f"{field['field']}: {field['message']}" for field in fields[:5]
        )
    return error_response(400, "VALIDATION_ERROR", message, details={"fields": fields})


def _describe_field_error(error: Any) -> dict[str, Any]:
    location = [_printable(str(part)) for part in error.get("loc", ()) if part != "body"]
    if error.get("type") == "json_invalid":
        # The location is a character offset, not a field.
        ctx = error.get("ctx") or {}
        return {
            "field": "body",
            "message": f"{ctx.get('error', 'invalid JSON')} at character {location[0]}"
            if location
            else str(ctx.get("error", "invalid JSON")),
            "type": "json_invalid",
        }
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "string_pattern_mismatch" and message.startswith(_PYDANTIC_PATTERN):
        # pydantic's message is the regex itself (hundreds of characters for a user id);
        # a field with a pattern gives its rule in words, and any other says no more.
        message = "has a form that is not allowed here"
    described: dict[str, Any] = {
        "field": ".".join(location) or "body",
        "message": message,
        "type": str(error.get("type", "invalid")),
    }
    value = error.get("input")
    if _echoable(value):
        described["input"] = value
    return described


def _echoable(value: Any) -> bool:
    """Short scalars only, and only what JSON can carry back: no NaN or infinity, no lone
    surrogate (valid in JSON text, not in UTF-8)."""
    if isinstance(value, bool | int):
        return len(str(value)) <= _MAX_DETAIL_INPUT
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return len(value) <= _MAX_DETAIL_INPUT
    return False


def _printable(text: str, limit: int = _MAX_DETAIL_INPUT) -> str:
    """Client-supplied text (an unknown field's name, a path) made safe to echo: UTF-8,
    bounded."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(TaskNotFound, _task_not_found)
    app.add_exception_handler(DatabaseError, _database_error)
    app.add_exception_handler(DataRejected, _data_rejected)
    app.add_exception_handler(SQLAlchemyError, _unexpected_database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
