"""The FastAPI application: `create_app(settings)` builds it for any configuration (the
server's comes from src.main, which builds it in the background; tests build their own).

Nothing here touches a database: the engine and the start-up decision live in the
lifespan, in the background, so `/health` answers at once whatever the database does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from src.api import status_page, system, tasks
from src.auth.dependencies import bearer_token
from src.auth.setup import build_auth
from src.config.settings import APP_NAME, APP_VERSION, Settings, load_settings
from src.core.logging import configure_logging
from src.core.redaction import redactor
from src.database.manager import DatabaseManager
from src.database.sqlite_locator import locate_for
from src.http.cors import ApiCORSMiddleware
from src.http.exception_handlers import install_error_handlers
from src.http.middleware import RequestContextMiddleware
from src.http.openapi import install_openapi
from src.schemas.tasks import TaskCompletion, TaskCreate, TaskUpdate

logger = logging.getLogger(__name__)

# Allocations between young collections, and collections between older ones (CPython's
# defaults: 700, 10, 10). Objects that form no cycle are freed at once either way.
GC_THRESHOLDS = (50_000, 50, 100)


_NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    redactor.add(*settings.secret_values)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager: DatabaseManager = app.state.database
        # Invalid values replaced by their defaults, and the like: computed once with the
        # settings and shown on /config/database and by doctor; logged here, at the one
        # start of the application a process makes (each worker is a process of its own).
        for warning in settings.warnings:
            logger.warning("%s", warning)
        # Where SQLite lives, found once per start (a write probe of a few milliseconds):
        # the generated token secret goes beside it, and the manager uses it if it falls
        # back. Before the database starts: the probe must not race its first connection.
        location = await asyncio.to_thread(locate_for, settings)
        auth = await asyncio.to_thread(build_auth, settings, location)
        app.state.auth = auth.verifier
        app.state.auth_mode = auth.mode
        await manager.start(location=location)
        # Everything imported and built so far lives as long as the process: freezing it
        # keeps the collector from walking it again on every full collection, and fewer
        # collections of the young generation. Measured: the slowest 1 % of requests took
        # half as long (a full collection over the startup heap took tens of ms).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        warming: asyncio.Task[None] | None = None
        if auth.verifier.jwks is not None:
            # In the background: a slow key server must not delay start-up.
            warming = asyncio.create_task(auth.verifier.jwks.warm())
        try:
            yield
        finally:
            if warming is not None:
                warming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await warming
            await manager.stop()

    app = FastAPI(
        title="Todo API",
        version=APP_VERSION,
        summary=f"{APP_NAME}: tasks per user, on PostgreSQL, MySQL or an embedded SQLite.",
        lifespan=lifespan,
        # A slash redirect would be built from the client's Host header; the middleware
        # serves `/x/` as `/x` instead.
        redirect_slashes=False,
        # FastAPI's OpenTelemetry hooks (unconfigured here) ran on every request; the app
        # logs its own access lines.
        telemetry=_NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.auth = None  # the token verifier, set when the lifespan starts
    app.state.auth_mode = None
    # Cheap and I/O-free (it only resolves the URL); connecting happens in the lifespan.
    app.state.database = DatabaseManager(settings)

    install_error_handlers(app)
    # Routes are matched in order: the task API, which carries the traffic, goes first,
    # before FastAPI's own /docs and /openapi.json. Taken from the routers as they are
    # (their prefix, tags and responses already applied): an included router is matched
    # through an extra layer on every request.
    app.router.routes[:0] = [
        *tasks.router.routes,
        *status_page.router.routes,
        *system.router.routes,
    ]
    install_openapi(
        app, request_models=(TaskCreate, TaskUpdate, TaskCompletion), security=(bearer_token,)
    )
    app.add_middleware(RequestContextMiddleware)
    # Outermost, so that every response (errors included) carries the CORS headers.
    # Starlette's, with its preflight refusals as our JSON errors (src.http.cors).
    app.add_middleware(
        ApiCORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_credentials=False,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "X-Total-Count", "Retry-After"],
        max_age=600,
    )
    return app
