"""Request-scoped database access: one session per request, rolled back on error, closed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from src.database.deadline import request_deadline
from src.database.engine import SQLITE_WRITE
from src.database.manager import DatabaseManager
from src.database.state import DatabaseStarting


def get_manager(request: Request) -> DatabaseManager:
    manager: DatabaseManager | None = getattr(request.app.state, "database", None)
    if manager is None:
        raise DatabaseStarting("The database is not started yet.", retry_after=1)
    return manager


async def get_engine(request: Request) -> Engine:
    # Async so that waiting for the start-up decision does not hold a worker thread, and
    # so that the deadline set here is inherited by the threads that run the queries.
    manager = get_manager(request)
    engine = await manager.acquire()
    request_deadline.set(time.monotonic() + manager.settings.database_statement_timeout)
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def _session(engine: Engine, *, write: bool) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        if engine.url.get_backend_name() == "sqlite":
            session.connection(execution_options={SQLITE_WRITE: write})
        try:
            yield session
        except Exception:
            session.rollback()
            raise


def get_session(engine: EngineDep) -> Iterator[Session]:
    """A session for requests that write (SQLite: takes the write lock up front)."""
    yield from _session(engine, write=True)


def get_read_session(engine: EngineDep) -> Iterator[Session]:
    """A session for requests that only read (SQLite: readers never wait for writers)."""
    yield from _session(engine, write=False)


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
