"""SQLite units of work run on the event loop's own thread, when they can be quick.

A task query on SQLite takes well under a millisecond: handing it to a worker thread costs
more than running it (the hop, and the GIL passed back and forth with the loop). So a
unit of work first runs here, on one connection kept open for the loop, under two rules
that keep the loop from ever waiting:

* the connection never waits for a lock (`busy_timeout=0`), and a writer first takes the
  in-process writer lock without blocking. When another writer (a worker thread, another
  process, Litestream's checkpoint) holds the database, the request awaits and tries
  again (`run_waiting`, backing off from `_RETRY_FIRST` to `_RETRY_MAX`) for up to
  `CONTENDED_WAIT_SECONDS`; only then does the work go to a thread, which waits there as
  long as the busy timeout allows. Handing contended writes to threads at once made them
  hold the in-process lock in turn, so that every later write found it taken and went
  to a thread too: with Litestream's periodic checkpoints, creates fell to under half
  their throughput and never came back on the loop (bench.replication);
* a statement that runs past `BUDGET_SECONDS` is interrupted (a progress handler) and its
  transaction rolled back; the work then runs again in a thread, with no budget.

Either way the unit of work runs exactly once to completion: an interrupted or refused
attempt changed nothing.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from src.database.checkpointer import Checkpointer
from src.database.concurrency import gate_for
from src.database.engine import SQLITE_WRITE

T = TypeVar("T")

BUDGET_SECONDS = 0.02
CONTENDED_WAIT_SECONDS = 0.25
_RETRY_FIRST = 0.0005
_RETRY_MAX = 0.005
# SQLite calls the progress handler every this many virtual machine instructions.
_PROGRESS_STEPS = 1000
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_INTERRUPT = 9


class Deferred(Exception):
    """The work cannot run on the loop right now: run it in a thread instead."""


class Contended(Deferred):
    """Someone else holds the database (or the in-process writer lock) at the moment."""


class InlineSqlite:
    """The loop's two connections to one SQLite file: one that reads, one that writes."""

    def __init__(self, engine: Engine, *, checkpoint: bool = True) -> None:
        """`checkpoint`: run the file's WAL checkpoints in a thread (src.database.
        checkpointer); False when Litestream checkpoints it."""
        self.engine = engine
        self._checkpointer = (
            Checkpointer(Path(engine.url.database)) if checkpoint and engine.url.database else None
        )
        self._writer = gate_for(engine).writer
        self._connections: dict[bool, Connection] = {}
        self._deadline = math.inf

    def run(self, write: bool, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in one transaction on the loop; raises Deferred when it must
        run in a thread, and whatever the work or the database raised otherwise."""
        lock = self._writer if write else None
        if lock is not None and not lock.acquire(blocking=False):
            raise Contended
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
                code = _sqlite_code(error)
                if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                    raise Contended from error
                if code == _SQLITE_INTERRUPT:
                    raise Deferred from error
                raise
            finally:
                self._deadline = math.inf
            return result
        finally:
            if lock is not None:
                lock.release()

    async def run_waiting(self, write: bool, work: Callable[[Connection], T]) -> T:
        """`run`, awaiting a contended database for up to CONTENDED_WAIT_SECONDS; raises
        Deferred when the work must run in a thread after all."""
        delay = _RETRY_FIRST
        give_up = time.perf_counter() + CONTENDED_WAIT_SECONDS
        while True:
            try:
                return self.run(write, work)
            except Contended:
                if time.perf_counter() + delay > give_up:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        # Discarded, not returned to the pool: with busy_timeout=0 and the progress
        # handler, a thread that took one from the pool would fail at the first lock.
        for connection in self._connections.values():
            connection.invalidate()
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
