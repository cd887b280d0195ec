"""Units of work: what a request gets from the manager to run its queries.

`Database.read`, `write`, `write_idempotent` and `write_one` run one service function as
one transaction: open a connection, begin, run it, commit, return the connection. Where it
runs depends on the database, to keep the event loop and the GIL out of each other's way:

* SQLite: on the event loop when it can be quick (src.database.inline), else in a worker
  thread, whole (a transaction must never hold SQLite's write lock across thread hops);
* PostgreSQL: on the event loop through SQLAlchemy's asyncio engine (src.database.
  async_engine); the same sync code, its I/O awaited;
* MySQL: in a worker thread.

What a failure means, and when the work is retried, is src.database.attempts; the
monitor (the manager) hears about failures that may be an outage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

import anyio.to_thread
from sqlalchemy.engine import Connection, Engine

from src.database.attempts import (
    Failed,
    Mode,
    driver_error,
    raise_translated,
    retrying,
    run_async,
    run_sync,
)
from src.database.concurrency import gate_for
from src.database.deadline import Deadline, request_deadline
from src.database.error_codes import Code, code_of
from src.database.failures import Failure
from src.database.inline import Deferred, InlineSqlite

__all__ = ["Database", "FaultMonitor", "retrying"]

if TYPE_CHECKING:
    # Only the PostgreSQL path has one; SQLAlchemy's asyncio layer is imported there.
    from sqlalchemy.ext.asyncio import AsyncEngine

P = ParamSpec("P")
T = TypeVar("T")


class FaultMonitor(Protocol):
    """Told (on the event loop) when a request saw the database fail as a whole."""

    def connection_failed(self, failure: Failure) -> None: ...

    def statement_timed_out(self) -> None: ...

    async def handed_over(self, database: Database) -> Database | None:
        """`database` (SQLite) failed a statement: when it is a fallback whose tasks were
        moved into the primary, the database that serves instead, once the switch is made
        (raises DatabaseStarting when it takes too long); None otherwise."""
        ...


@dataclass(frozen=True)
class Database:
    """The engine in use and how a request runs work on it. `inline`: SQLite, whose work
    runs on the event loop when it can; `loop_engine`: PostgreSQL's asyncio engine."""

    engine: Engine
    monitor: FaultMonitor | None
    statement_timeout: float
    inline: InlineSqlite | None = None
    loop_engine: AsyncEngine | None = None

    async def read(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """`work(connection, …)` in a read-only transaction (SQLite: never waits for writers)."""
        return await self._run("read", False, _bind(work, *args, **kw))

    async def write(
        self,
        work: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kw: P.kwargs,
    ) -> T:
        """`work(connection, …)` in a transaction committed when it returns. Not retried
        after COMMIT was sent (use `write_idempotent` for work that can run twice)."""
        return await self._run("write", False, _bind(work, *args, **kw))

    async def write_idempotent(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Like `write`, for work whose second run changes nothing more (absolute values)."""
        return await self._run("write", True, _bind(work, *args, **kw))

    async def write_one(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Work that is a single statement, atomic on its own (autocommit on servers), and
        idempotent: the services make creates and deletes safe to run twice."""
        return await self._run("write_one", True, _bind(work, *args, **kw))

    async def close(self) -> None:
        """Release the loop's connections (the engine itself is the manager's)."""
        if self.inline is not None:
            self.inline.close()
        if self.loop_engine is not None:
            await self.loop_engine.dispose()

    async def _run(self, mode: Mode, idempotent: bool, work: Callable[[Connection], T]) -> T:
        try:
            return await self._run_here(mode, idempotent, work)
        except Exception as error:
            replacement = await self._replacement(error)
            if replacement is None:
                raise
        # The statement failed on a table that is gone, so it changed nothing: it runs,
        # whole, on the database that took over, with a deadline of its own.
        request_deadline.set(Deadline.after(replacement.statement_timeout))
        return await replacement._run_here(mode, idempotent, work)

    async def _replacement(self, error: Exception) -> Database | None:
        """Where the work goes when this SQLite fallback was handed over to the primary
        (src.database.promotion) by this worker or another one, while it ran."""
        if (
            self.monitor is None
            or self.engine.url.get_backend_name() != "sqlite"
            or not driver_error(error)
            or code_of(error) is not Code.OTHER  # "no such table" is SQLite's plain error
        ):
            return None
        replacement = await self.monitor.handed_over(self)
        return replacement if replacement is not self else None

    async def _run_here(self, mode: Mode, idempotent: bool, work: Callable[[Connection], T]) -> T:
        try:
            if self.inline is not None:
                try:
                    return await self.inline.run_waiting(mode != "read", work)
                except Deferred:
                    pass  # the thread below waits for the lock, or runs without a budget
                except Exception as error:
                    if not driver_error(error):
                        raise
                    raise_translated(error, "work", self.engine, mode, retried=False)
            if request_deadline.get() is None:
                request_deadline.set(Deadline.after(self.statement_timeout))
            if self.loop_engine is not None:
                # As many at once as the pool keeps connections: beyond that, overflow
                # connections would be opened and closed for every burst.
                async with gate_for(self.engine).limiter:
                    return await run_async(self.loop_engine, mode, idempotent, work)
            call = partial(run_sync, self.engine, mode, idempotent, work)
            return await anyio.to_thread.run_sync(call, limiter=gate_for(self.engine).limiter)
        except Failed as failed:
            if self.monitor is not None:
                if failed.failure is not None:
                    self.monitor.connection_failed(failed.failure)
                elif failed.timed_out:
                    self.monitor.statement_timed_out()
            raise failed.error from failed.__cause__


def _bind(
    work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
) -> Callable[[Connection], T]:
    def bound(connection: Connection) -> T:
        return work(connection, *args, **kw)

    return bound
