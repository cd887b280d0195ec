"""SQLite units of work run on the event loop's own thread, when they can be quick.

A task query on SQLite takes well under a millisecond: handing it to a worker thread costs
more than running it (the hop, and the GIL passed back and forth with the loop). So a
unit of work first runs here, on one connection kept open for the loop, under two rules
that keep the loop from ever waiting:

* the connection never waits for a lock (`busy_timeout=0`), and a writer first takes the
  in-process writer lock without blocking: when another writer (a worker thread, another
  process, Litestream's checkpoint) holds the database, the work goes to a thread, which
  waits there as long as the busy timeout allows;
* a statement that runs past `BUDGET_SECONDS` is interrupted (a progress handler) and its
  transaction rolled back; the work then runs again in a thread, with no budget.

Either way the unit of work runs exactly once to completion: an interrupted or refused
attempt changed nothing.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from src.database.concurrency import gate_for
from src.database.engine import SQLITE_WRITE

T = TypeVar("T")

BUDGET_SECONDS = 0.02
# SQLite calls the progress handler every this many virtual machine instructions.
_PROGRESS_STEPS = 1000
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_INTERRUPT = 9


class Deferred(Exception):
    """The work cannot run on the loop right now: run it in a thread instead."""


class InlineSqlite:
    """The loop's two connections to one SQLite file: one that reads, one that writes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = gate_for(engine).writer
        self._connections: dict[bool, Connection] = {}
        self._deadline = math.inf

    def run(self, write: bool, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in one transaction on the loop; raises Deferred when it must
        run in a thread, and whatever the work or the database raised otherwise."""
        lock = self._writer if write else None
        if lock is not None and not lock.acquire(blocking=False):
            raise Deferred
        try:
            connection = self._connection(write)
            raw: Any = connection.connection.dbapi_connection
            self._deadline = time.perf_counter() + BUDGET_SECONDS
            try:
                # The transaction on the driver itself: the work runs its statements on the
                # driver's cursor (src.database.statements), so SQLAlchemy's transaction
                # bookkeeping (a third of a create's cost here) would only wrap nothing.
                raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = work(connection)
                    self._deadline = math.inf  # a COMMIT is never interrupted
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise
            except (sqlite3.OperationalError, sa_exc.OperationalError) as error:
                if _sqlite_code(error) in (_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_INTERRUPT):
                    raise Deferred from error
                raise
            finally:
                self._deadline = math.inf
            return result
        finally:
            if lock is not None:
                lock.release()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def _connection(self, write: bool) -> Connection:
        connection = self._connections.get(write)
        if connection is None or connection.closed or connection.invalidated:
            connection = self.engine.connect().execution_options(**{SQLITE_WRITE: write})
            raw: Any = connection.connection.driver_connection
            raw.execute("PRAGMA busy_timeout=0")
            raw.set_progress_handler(self._over_budget, _PROGRESS_STEPS)
            self._connections[write] = connection
        return connection

    def _over_budget(self) -> int:
        return 1 if time.perf_counter() > self._deadline else 0


def _sqlite_code(error: BaseException) -> int | None:
    original = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    code = getattr(original, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None
