"""The one place where exceptions become HTTP responses.

Every 4xx/5xx body is `{"error": <sentence>, "code": <MACHINE_CODE>, "details"?: …}`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from src.core.logging import request_id_var
from src.database.failures import is_connectivity_error
from src.database.state import DatabaseNotReady

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Validation details echo at most this much of a rejected value.
_MAX_DETAIL_INPUT = 80


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx response."""

    error: str = Field(description="A sentence for people.", examples=["No such task."])
    code: str = Field(description="A stable machine code.", examples=["TASK_NOT_FOUND"])
    details: Any = Field(
        default=None, description="Optional: the invalid fields, the request id of a 500, …"
    )


_ERROR_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, wrong or unknown fields, bad parameters "
    "(`VALIDATION_ERROR`, with `details.fields`).",
    401: "Missing, invalid or expired bearer token (`UNAUTHORIZED`, `TOKEN_EXPIRED`); "
    "carries `WWW-Authenticate: Bearer`.",
    403: "The token belongs to another user than the one in the path (`FORBIDDEN`).",
    404: "No such task for this user (`TASK_NOT_FOUND`); another user's task looks the same.",
    413: "The request body is larger than 64 KiB (`PAYLOAD_TOO_LARGE`).",
    500: "Unexpected error (`INTERNAL_ERROR`); `details.request_id` identifies the logged "
    "traceback.",
    503: "The database (or the key server) is unavailable or still starting "
    "(`DATABASE_UNAVAILABLE`, `DATABASE_STARTING`, …); see `Retry-After`.",
}


# Headers every such response carries (the handlers below and src.auth always set them).
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": '`Bearer` (no token) or `Bearer error="invalid_token"`.',
            "required": True,
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses, with the error schema."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in status_codes:
        entry = {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[code]}
        if code in _ERROR_HEADERS:
            entry["headers"] = _ERROR_HEADERS[code]
        responses[code] = entry
    return responses


class ApiError(Exception):
    """Raised by routes and services for any expected failure."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_body(message: str, code: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return body


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(message, code, details), status_code, headers=headers)


def internal_error_body() -> dict[str, Any]:
    request_id = request_id_var.get()
    return error_body(
        "An unexpected error occurred; it has been logged.",
        "INTERNAL_ERROR",
        {"request_id": request_id} if request_id else None,
    )


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    if exc.status_code == 404:
        message = f"Nothing here: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
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
        message = "The request body is not valid JSON."
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
    described: dict[str, Any] = {
        "field": ".".join(location) or "body",
        "message": str(error.get("msg", "invalid")),
        "type": str(error.get("type", "invalid")),
    }
    value = error.get("input")
    short = isinstance(value, str | int | float | bool) and len(str(value)) <= _MAX_DETAIL_INPUT
    if short and (not isinstance(value, str) or _encodable(value)):
        described["input"] = value
    return described


def _printable(text: str, limit: int = _MAX_DETAIL_INPUT) -> str:
    """Client-supplied text (an unknown field's name) made safe to echo: UTF-8, bounded."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encodable(text: str) -> bool:
    # A lone surrogate (valid in JSON, not in UTF-8) cannot be echoed back.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _database_not_ready(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseNotReady)
    return error_response(503, exc.code, exc.reason, headers={"Retry-After": str(exc.retry_after)})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SQLAlchemyError)
    if is_connectivity_error(exc):
        manager = getattr(request.app.state, "database", None)
        if manager is not None:
            manager.report_failure(exc)
        logger.warning("Database unreachable during %s %s", request.method, request.url.path)
        return error_response(
            503,
            "DATABASE_UNAVAILABLE",
            "The database is unavailable; try again shortly.",
            headers={"Retry-After": "5"},
        )
    busy_sqlite = "database is locked" in str(exc) or "database table is locked" in str(exc)
    if busy_sqlite or isinstance(exc, PoolTimeoutError):
        # Should not happen (busy_timeout, BEGIN IMMEDIATE, pool sized to the thread
        # pool), but if it does it is a retryable condition, not a server bug.
        logger.warning("Database busy during %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503, "DATABASE_BUSY", "The database is busy; try again.", headers={"Retry-After": "1"}
        )
    logger.error("Database error during %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(internal_error_body(), 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DatabaseNotReady, _database_not_ready)
    app.add_exception_handler(SQLAlchemyError, _database_error)
