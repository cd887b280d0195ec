"""PostgreSQL for requests, on the event loop: SQLAlchemy's asyncio engine over psycopg.

Measured: with the task queries in worker threads, each unit of work on PostgreSQL spent
most of its time waiting for the GIL while the event loop held it, and the server did
half the requests per second of the same queries issued without threads. On this engine
a request's unit of work runs unchanged (the same sync code, in a greenlet: SQLAlchemy's
`run_sync`) while psycopg's I/O waits on the loop. The pool, the deadline watchdog and
the liveness check are the sync engine's, installed on its `sync_engine`.

Only requests use it; start-up, migrations, probes and transfers keep the sync engine.
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from src.config.settings import Settings
from src.database.engine import install_server_hooks, postgresql_connect_args, server_pool_options

ASYNC_DRIVER = "postgresql+psycopg_async"


def create_async_postgresql_engine(url: URL, settings: Settings) -> AsyncEngine:
    """An asyncio engine for the same PostgreSQL `url` (a resolver-accepted URL object)."""
    engine = create_async_engine(
        url.set(drivername=ASYNC_DRIVER),
        connect_args=postgresql_connect_args(url, settings),
        **server_pool_options(settings),
    )
    install_server_hooks(engine.sync_engine, settings, deadline=True)
    return engine
