"""What uvicorn serves (`src.main:app`): liveness first, the application right after.

Importing FastAPI, pydantic and SQLAlchemy takes most of a second before the first byte
could be answered — longer than a Space or a load balancer may wait for the port, and
most of a cold start. So `app` is a small ASGI front that answers at once: the
application is imported and built in a thread (src.application), its lifespan started
when it is; meanwhile `/health` answers 200 "degraded" (the process is alive, no
database yet — as the application itself says while the database is being decided),
`GET`/`HEAD /` a short "starting" page, and any other request waits for the application
(at most `WAIT_SECONDS`, then 503 `STARTING`). From then on every request goes straight
to the application. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

WAIT_SECONDS = 30.0
# The same rule as src.http.middleware: a caller's X-Request-ID is echoed when it is tame.
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_Scope = dict[str, Any]
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
_STARTING_PAGE = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8">'
    b'<meta http-equiv="refresh" content="2"><title>todo-backend \xc2\xb7 starting</title>'
    b"</head><body><p>The Todo API is starting; this page reloads in a moment.</p>"
    b"</body></html>"
)


def _create_app() -> Any:
    from src.application import create_app

    return create_app()


class StagedApp:
    """An ASGI application that is `build()`'s result once that has been made and its
    lifespan has started, and answers liveness and the front page until then."""

    def __init__(self, build: Callable[[], Any] = _create_app) -> None:
        self._build_application = build
        self._serving: Any = None  # the application, once its lifespan has started
        self._application: Any = None
        self._failure: str | None = None
        self._built = threading.Event()
        self._ready: asyncio.Event | None = None
        self._lifespan: _Lifespan | None = None
        self._building = False

    def _start_building(self) -> None:
        # On the first call (the server's lifespan start-up), not at import: a process
        # that imports this module and exits (a tool, a test) must not leave a thread
        # importing C extensions while the interpreter shuts down — that aborted it.
        if not self._building:
            self._building = True
            threading.Thread(target=self._build, name="app-import", daemon=True).start()

    def _build(self) -> None:
        try:
            self._application = self._build_application()
        except Exception as exc:
            logger.exception("The application could not be built")
            self._failure = f"the application could not be built ({type(exc).__name__})"
        finally:
            self._built.set()

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        serving = self._serving
        if serving is not None:
            await serving(scope, receive, send)
            return
        self._start_building()
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        if scope["type"] == "http" and await self._answer_while_starting(scope, send):
            return
        if not await self._wait_ready():
            await _send(send, 503, _error("The service is starting; try again.", "STARTING"), scope)
            return
        await self._application(scope, receive, send)

    # -- lifespan ----------------------------------------------------------------------

    async def _serve_lifespan(self, receive: Any, send: Any) -> None:
        self._ready = asyncio.Event()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # At once: the server must listen while the application is imported.
                asyncio.get_running_loop().create_task(self._start_application())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._lifespan is not None:
                    await self._lifespan.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start_application(self) -> None:
        assert self._ready is not None
        await asyncio.to_thread(self._built.wait)
        if self._application is not None:
            self._lifespan = _Lifespan(self._application)
            if await self._lifespan.startup():
                self._serving = self._application
            else:
                self._failure = "the application's start-up failed; see the log"
                self._application = None
        self._ready.set()

    async def _wait_ready(self) -> bool:
        if self._ready is None:  # served without a lifespan (some test clients)
            await asyncio.to_thread(self._built.wait)
            return self._application is not None
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=WAIT_SECONDS)
        except TimeoutError:
            return False
        return self._application is not None

    # -- while starting ----------------------------------------------------------------

    async def _answer_while_starting(self, scope: _Scope, send: Any) -> bool:
        """Liveness and the front page before the application exists; False otherwise."""
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            return False
        if path == "/health":
            body = {
                "status": "degraded",
                "timestamp": datetime.now(UTC).isoformat(),
                "database_status": "DISCONNECTED",
                "database_type": None,
                "fallback_active": False,
                "starting": self._failure or "the application is being loaded",
            }
            await _send(send, 503 if self._failure else 200, body, scope, head=method == "HEAD")
            return True
        if path == "/" and self._failure is None:
            headers = [(b"content-type", b"text/html; charset=utf-8"), *_HEADERS[1:]]
            await _send_bytes(send, 200, _STARTING_PAGE, headers, scope, head=method == "HEAD")
            return True
        return False


class _Lifespan:
    """The application's own lifespan, driven from inside ours."""

    def __init__(self, application: Any) -> None:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            application(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                self._to_app.get,
                self._from_app.put,
            )
        )

    async def startup(self) -> bool:
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply.get("type") != "lifespan.startup.complete":
            logger.error("Application start-up failed: %s", reply.get("message", reply))
            return False
        return True

    async def shutdown(self, timeout: float = 60.0) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._reply(), timeout)
        except TimeoutError:
            logger.error("The application did not finish shutting down in %g s", timeout)

    async def _reply(self) -> dict[str, Any]:
        getter = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        return {"type": "lifespan.failed", "message": repr(self._task.exception())}


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": message, "code": code}


async def _send(
    send: Any, status: int, body: dict[str, Any], scope: _Scope, *, head: bool = False
) -> None:
    headers = list(_HEADERS)
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await _send_bytes(
        send,
        status,
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        headers,
        scope,
        head=head,
    )


async def _send_bytes(
    send: Any,
    status: int,
    payload: bytes,
    headers: list[tuple[bytes, bytes]],
    scope: _Scope,
    *,
    head: bool,
) -> None:
    headers = [
        *headers,
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", _request_id(scope)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else payload})


def _request_id(scope: _Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and _REQUEST_ID.match(value):
            return bytes(value)
    return uuid.uuid4().hex.encode()


# Imported by uvicorn (and by each of its workers); the import thread starts at the
# lifespan's start-up, the first thing the server sends.
app = StagedApp()
