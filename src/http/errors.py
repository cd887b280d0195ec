"""The one place where exceptions become HTTP responses.

Every 4xx/5xx body is `{"error": <sentence>, "code": <MACHINE_CODE>, "details"?: …}`.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from src.core.logging import request_id_var

STATUS_CODES = {
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
    """Raised by the HTTP layer (routes, auth dependencies) for an expected failure."""

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
