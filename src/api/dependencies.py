"""Request dependencies: the database manager, and the database a data request uses.

`DatabaseDep` is async: waiting for the start-up decision must not hold a worker thread,
and the request's deadline, set here on the event loop, is inherited by the threads that
run its queries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from src.database.deadline import Deadline, request_deadline
from src.database.errors import DatabaseStarting
from src.database.manager import DatabaseManager
from src.database.transactions import Database


def get_manager(request: Request) -> DatabaseManager:
    manager: DatabaseManager | None = getattr(request.app.state, "database", None)
    if manager is None:
        raise DatabaseStarting("The database is not started yet.", retry_after=1)
    return manager


async def get_database(request: Request) -> Database:
    database = await get_manager(request).acquire()
    request_deadline.set(Deadline.after(database.statement_timeout))
    return database


ManagerDep = Annotated[DatabaseManager, Depends(get_manager)]
DatabaseDep = Annotated[Database, Depends(get_database)]
