"""Database access for requests: the engine dependency (which waits for start-up and sets
the request's deadline) and the session context used for each unit of work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def open_session(engine: Engine, *, write: bool) -> Iterator[Session]:
    """One session for one unit of work: rolled back on error, always closed.

    `write=False` lets SQLite readers run beside a writer; `write=True` takes SQLite's
    write lock up front (BEGIN IMMEDIATE). There is deliberately no FastAPI session
    dependency: a dependency and a sync route run on different worker threads, and a
    transaction holding SQLite's write lock must not wait for a free thread in between
    (see src.services.unit_of_work, which runs the whole transaction in one hop).
    """
    with Session(engine, expire_on_commit=False) as session:
        if engine.url.get_backend_name() == "sqlite":
            session.connection(execution_options={SQLITE_WRITE: write})
        try:
            yield session
        except Exception:
            session.rollback()
            raise
