"""Database access for requests: the engine dependency (which waits for start-up and sets
the request's deadline) and the connection context used for each unit of work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Connection, Engine

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
def open_connection(
    engine: Engine, *, write: bool, single_statement: bool = False
) -> Iterator[Connection]:
    """One connection for one unit of work: committed when the block ends, rolled back on
    error, always returned to the pool.

    SQLite: `write=False` lets readers run beside a writer (BEGIN), `write=True` takes the
    write lock up front (BEGIN IMMEDIATE). PostgreSQL and MySQL: reads and single-statement
    writes run in autocommit, saving the BEGIN and COMMIT round trips; at READ COMMITTED
    a transaction would not give a read two statements long one snapshot anyway.

    There is deliberately no FastAPI session dependency: a dependency and a sync route run
    on different worker threads, and a transaction holding SQLite's write lock must not
    wait for a free thread in between (src.services.unit_of_work runs the whole unit of
    work in one hop). The queries are Core statements, so no ORM Session is needed either.
    """
    with engine.connect() as connection:
        if engine.url.get_backend_name() == "sqlite":
            connection.execution_options(**{SQLITE_WRITE: write})
        elif single_statement or not write:
            connection.execution_options(isolation_level="AUTOCOMMIT")
        with connection.begin():
            yield connection
