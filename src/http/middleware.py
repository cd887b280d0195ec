"""The outermost request layer: request id, security and cache headers, path
normalisation, body limit, access log, and the last-resort 500.

Written as plain ASGI (not BaseHTTPMiddleware) so it adds no task or buffering per
request, and so it can answer for exceptions that escape everything else: Starlette's
own ServerErrorMiddleware would answer those without our headers or JSON body.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.core.logging import request_id_var
from src.http.errors import error_body, internal_error_body
from src.http.headers import NO_STORE, request_id_from, standard_headers

logger = logging.getLogger("src.access")

MAX_BODY_BYTES = 64 * 1024


class _BodyTooLarge(HTTPException):
    """An HTTPException so that FastAPI, which wraps other errors raised while it reads
    the body into a generic 400, passes it through to the 413 handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit // 1024} KiB.")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_incoming_request_id(scope))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        extra_headers = standard_headers(request_id)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [*message.get("headers", []), *extra_headers]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        _strip_trailing_slash(scope)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body:
                await self._too_large(send_wrapper)
                return
            await self.app(scope, self._limited(receive), send_wrapper)
        except _BodyTooLarge:
            if not response_started:
                await self._too_large(send_wrapper)
        except Exception:
            logger.exception("Unhandled error during %s %s", scope["method"], scope["path"])
            if not response_started:
                await _send_json(send_wrapper, 500, internal_error_body())
        finally:
            if logger.isEnabledFor(logging.INFO):
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                # uvicorn's proxy-headers support has put X-Forwarded-For here.
                client = (scope.get("client") or ("-",))[0]
                logger.info(
                    "%s %s %d %.1fms %s",
                    scope["method"],
                    scope["path"],
                    status,
                    duration_ms,
                    client,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": duration_ms,
                        "client": client,
                    },
                )
            request_id_var.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge(self.max_body)
            return message

        return wrapped

    async def _too_large(self, send: Send) -> None:
        body = error_body(
            f"The request body is larger than {self.max_body // 1024} KiB.", "PAYLOAD_TOO_LARGE"
        )
        await _send_json(send, 413, body, close=True)


def _strip_trailing_slash(scope: Scope) -> None:
    """`/api/alice/tasks/` is served as `/api/alice/tasks`. Starlette would answer it with
    a redirect to an absolute URL built from the client's Host header (an open redirect);
    serving it in place needs no redirect at all."""
    path: str = scope["path"]
    if len(path) > 1 and path.endswith("/"):
        scope["path"] = path.rstrip("/") or "/"
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and raw.endswith(b"/"):
            scope["raw_path"] = raw.rstrip(b"/") or b"/"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return str(value.decode("latin-1"))
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any], *, close: bool = False) -> None:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if close:
        # The client may still be sending a body we refuse to read.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
