"""src.main's staged front: liveness and the front page while the application is being
imported, every other request held until it is ready (or told 503 `STARTING`), and the
application's own lifespan started and shut down through it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

import src.main
from src.main import StagedApp


def _application(events: list[str], *, fail_startup: bool = False) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        events.append("startup")
        if fail_startup:
            raise RuntimeError("no database today")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    @app.post("/api/things")
    async def things() -> JSONResponse:
        return JSONResponse({"made": True}, status_code=201)

    return app


class _Blocked:
    """A build that waits until released, then returns (or raises) what it was given."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.release = threading.Event()
        self._make = make

    def __call__(self) -> Any:
        assert self.release.wait(10)
        return self._make()


async def _request(
    app: Any, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 7860),
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


class _Server:
    """Drives the front's lifespan the way uvicorn does."""

    def __init__(self, app: StagedApp) -> None:
        self._in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.get_running_loop().create_task(app(scope, self._in.get, self._out.put))

    async def startup(self) -> dict[str, Any]:
        await self._in.put({"type": "lifespan.startup"})
        return await asyncio.wait_for(self._out.get(), 5)

    async def shutdown(self) -> dict[str, Any]:
        await self._in.put({"type": "lifespan.shutdown"})
        reply = await asyncio.wait_for(self._out.get(), 5)
        await asyncio.wait_for(self._task, 5)
        return reply


async def _ready(app: StagedApp) -> None:
    for _ in range(500):
        if app._serving is not None or app._failure is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the application never became ready")


def test_liveness_and_front_page_answer_while_the_application_is_imported() -> None:
    events: list[str] = []
    build = _Blocked(lambda: _application(events))

    async def scenario() -> None:
        app = StagedApp(build)
        server = _Server(app)
        # The server may listen at once: the import has not finished.
        assert (await server.startup())["type"] == "lifespan.startup.complete"

        status, headers, body = await _request(app, "GET", "/health", {"X-Request-ID": "probe-1"})
        assert status == 200
        payload = json.loads(body)
        assert payload["status"] == "degraded"
        assert payload["database_status"] == "DISCONNECTED"
        assert headers["x-request-id"] == "probe-1"
        assert headers["cache-control"] == "no-store"

        status, headers, body = await _request(app, "HEAD", "/health")
        assert (status, body) == (200, b"")
        assert int(headers["content-length"]) > 0

        status, headers, body = await _request(app, "GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"starting" in body

        # Anything else waits for the application instead of failing.
        waiting = asyncio.create_task(_request(app, "POST", "/api/things"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert events == []

        build.release.set()
        status, _, body = await asyncio.wait_for(waiting, 10)
        assert (status, json.loads(body)) == (201, {"made": True})
        assert events == ["startup"]

        # From now on the application answers, /health included.
        status, _, body = await _request(app, "GET", "/health")
        assert json.loads(body) == {"status": "healthy"}

        assert (await server.shutdown())["type"] == "lifespan.shutdown.complete"
        assert events == ["startup", "shutdown"]

    asyncio.run(scenario())


def test_a_request_that_outwaits_the_import_is_told_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(src.main, "WAIT_SECONDS", 0.2)
    build = _Blocked(lambda: _application([]))

    async def scenario() -> None:
        app = StagedApp(build)
        server = _Server(app)
        await server.startup()
        status, headers, body = await _request(
            app, "GET", "/api/tasks", {"X-Request-ID": "bad id\n"}
        )
        assert status == 503
        assert json.loads(body)["code"] == "STARTING"
        assert headers["retry-after"] == "1"
        # An unsafe request id is replaced, never echoed.
        assert headers["x-request-id"] != "bad id\n" and len(headers["x-request-id"]) == 32
        build.release.set()
        await _ready(app)
        await server.shutdown()

    asyncio.run(scenario())


def _boom() -> Any:
    raise ImportError("a broken install")


@pytest.mark.parametrize(
    "make",
    [_boom, lambda: _application([], fail_startup=True)],
    ids=["import-fails", "lifespan-fails"],
)
def test_an_application_that_cannot_start_is_not_reported_alive(
    make: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        app = StagedApp(make)
        server = _Server(app)
        await server.startup()
        await _ready(app)
        assert app._failure is not None

        status, _, body = await _request(app, "GET", "/health")
        assert status == 503 and json.loads(body)["status"] == "degraded"
        status, _, body = await _request(app, "POST", "/api/things")
        assert status == 503 and json.loads(body)["code"] == "STARTING"
        status, _, _ = await _request(app, "GET", "/")
        assert status == 503
        assert (await server.shutdown())["type"] == "lifespan.shutdown.complete"

    asyncio.run(scenario())
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_importing_the_module_starts_nothing() -> None:
    # A tool or test that imports src.main and exits at once used to abort (SIGABRT, no
    # message) now and then: the import thread was still loading C extensions while the
    # interpreter shut down. The thread now starts with the server's first call.
    import subprocess
    import sys

    from tests.server import ROOT

    code = (
        "import threading, src.main; "
        "assert threading.active_count() == 1, threading.enumerate(); "
        "assert not src.main.app._building"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
