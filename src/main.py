"""The ASGI application. `app` is what uvicorn serves; tests build their own with
`create_app(settings)` for any configuration.

Nothing here touches a database: the engine and the start-up decision live in the
lifespan, in the background, so `/health` answers at once whatever the database does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from src.api import status_page, system
from src.config.settings import APP_NAME, APP_VERSION, Settings, load_settings
from src.core.errors import install_error_handlers
from src.core.logging import configure_logging, redactor
from src.core.middleware import RequestContextMiddleware
from src.database.manager import DatabaseManager


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    redactor.add(*settings.secret_values)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager: DatabaseManager = app.state.database
        await manager.start()
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(
        title="Todo API",
        version=APP_VERSION,
        summary=f"{APP_NAME}: tasks per user, on PostgreSQL, MySQL or an embedded SQLite.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Cheap and I/O-free (it only resolves the URL); connecting happens in the lifespan.
    app.state.database = DatabaseManager(settings)

    install_error_handlers(app)
    app.include_router(status_page.router)
    app.include_router(system.router)
    app.add_middleware(RequestContextMiddleware)
    # Outermost, so that every response (errors included) carries the CORS headers.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_credentials=False,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "X-Total-Count", "Retry-After"],
        max_age=600,
    )
    return app


app = create_app()
