"""Units of work: one transaction, run whole in one worker thread, with typed failures.

`Database` is what a request gets from the manager. `read`, `write` and `write_one` open a
connection, begin, run the service function, commit and return the connection, all in a
single thread-pool hop: splitting that over several hops would hold SQLite's write lock
while waiting for a free thread.

What a failure means is decided here, from error codes (src.database.error_codes), and
raised as one of src.database.errors:

* a connection the server had already closed (FATAL before our statement ran) is
  discarded and the work retried once on a fresh connection, whatever it is;
* a connection that broke mid-way is retried when that cannot apply a change twice:
  reads, transactions that had not reached COMMIT, and work declared `idempotent`;
  otherwise the client is told the change may or may not have been saved;
* only when the fresh connection fails too (or none can be opened) is the monitor told,
  which confirms an outage with a probe before anyone else is refused;
* a timeout, a lock wait or a deadlock answers this request only.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Concatenate, Literal, NoReturn, ParamSpec, Protocol, TypeVar

import anyio.to_thread
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from src.database.concurrency import gate_for
from src.database.deadline import Deadline, request_deadline
from src.database.engine import SQLITE_BUSY_TIMEOUT_MS, SQLITE_WRITE
from src.database.error_codes import Code, code_of
from src.database.errors import (
    ConnectionLost,
    DatabaseBusy,
    DatabaseError,
    DatabaseTimeout,
    DatabaseUnavailable,
    DataRejected,
)
from src.database.failures import Failure, classify, connection_lost, sanitize
from src.database.inline import Deferred, InlineSqlite

logger = logging.getLogger(__name__)


def _driver_error(error: BaseException) -> bool:
    """What a unit of work's database calls may raise. The task queries run on the driver's
    cursor (src.database.statements), so the drivers' own errors arrive unwrapped;
    psycopg's and PyMySQL's are told by their module, so that neither driver is imported
    where it is not used."""
    if isinstance(error, sa_exc.SQLAlchemyError | OSError | sqlite3.Error):
        return True
    return isinstance(error, Exception) and type(error).__module__.startswith(
        ("psycopg", "pymysql")
    )


P = ParamSpec("P")
T = TypeVar("T")
Mode = Literal["read", "write", "write_one"]
Stage = Literal["connect", "work", "commit"]

# True while a unit of work runs for the second time (the first attempt's connection
# broke): a service can tell "already done by the first attempt" from "never existed".
retrying: ContextVar[bool] = ContextVar("retrying", default=False)

_UNAVAILABLE = "The database is unavailable; try again shortly."
_LOST = (
    "The connection to the database broke while saving; the change may or may not have "
    "been saved. Reload before trying again."
)


class FaultMonitor(Protocol):
    """Told (on the event loop) when a request saw the database fail as a whole."""

    def connection_failed(self, failure: Failure) -> None: ...

    def statement_timed_out(self) -> None: ...


class _Failed(DatabaseError):
    """A typed failure plus what the monitor must hear about it."""

    def __init__(self, error: DatabaseError, failure: Failure | None, timed_out: bool) -> None:
        super().__init__(error.reason, retry_after=error.retry_after)
        self.error = error
        self.failure = failure
        self.timed_out = timed_out


@dataclass(frozen=True)
class Database:
    """The engine in use and how a request runs work on it. `inline`: SQLite, whose work
    runs on the event loop when it can (src.database.inline)."""

    engine: Engine
    monitor: FaultMonitor | None
    statement_timeout: float
    inline: InlineSqlite | None = None

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

    async def _run(self, mode: Mode, idempotent: bool, work: Callable[[Connection], T]) -> T:
        try:
            if self.inline is not None:
                try:
                    return self.inline.run(mode != "read", work)
                except Deferred:
                    pass  # the thread below waits for the lock, or runs without a budget
                except Exception as error:
                    if not _driver_error(error):
                        raise
                    _raise_translated(error, "work", self.engine, mode, retried=False)
            if request_deadline.get() is None:
                request_deadline.set(Deadline.after(self.statement_timeout))
            call = partial(_run_sync, self.engine, mode, idempotent, work)
            return await anyio.to_thread.run_sync(call, limiter=gate_for(self.engine).limiter)
        except _Failed as failed:
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


def _run_sync(engine: Engine, mode: Mode, idempotent: bool, work: Callable[[Connection], T]) -> T:
    try:
        return _attempt(engine, mode, work)
    except Exception as first:
        if not _driver_error(first):
            raise
        stage = getattr(first, "_todo_stage", "work")
        if not _may_retry(first, stage, mode, idempotent):
            _raise_translated(first, stage, engine, mode, retried=False)
        logger.info("Retrying the unit of work: %s", _why_retry(first, engine))
    token = retrying.set(True)
    try:
        return _attempt(engine, mode, work)
    except Exception as second:
        if not _driver_error(second):
            raise
        _raise_translated(second, getattr(second, "_todo_stage", "work"), engine, mode, True)
    finally:
        retrying.reset(token)


def _raise_translated(
    error: BaseException, stage: str, engine: Engine, mode: Mode, retried: bool
) -> NoReturn:
    translated = _translate(error, stage, engine, mode, retried=retried)
    if translated is error:
        raise error
    raise translated from error


def _attempt(engine: Engine, mode: Mode, work: Callable[[Connection], T]) -> T:
    stage: Stage = "connect"
    try:
        with _serialised(engine, mode), engine.connect() as connection:
            if engine.url.get_backend_name() == "sqlite":
                connection.execution_options(**{SQLITE_WRITE: mode != "read"})
            elif mode != "write":
                # Reads and single statements in autocommit: no BEGIN/COMMIT round trips
                # (at READ COMMITTED a read transaction gives no better snapshot anyway).
                connection.execution_options(isolation_level="AUTOCOMMIT")
            stage = "work"
            transaction = connection.begin()
            try:
                result = work(connection)
                stage = "commit"
                transaction.commit()
            except BaseException as error:
                if code_of(error) in (Code.TERMINATED, Code.CONNECTION_LOST):
                    # The driver's own error (raw cursor): tell the pool this connection
                    # is dead rather than let it try to reset it.
                    connection.invalidate()
                raise
            return result
    except BaseException as error:
        error._todo_stage = stage  # type: ignore[attr-defined]
        raise


@contextlib.contextmanager
def _serialised(engine: Engine, mode: Mode) -> Iterator[None]:
    writer = gate_for(engine).writer
    if writer is None or mode == "read":
        yield
        return
    # SQLite allows one writer: queue here rather than in its busy handler's sleeps.
    if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise sa_exc.TimeoutError("timed out waiting for SQLite's write lock")
    try:
        yield
    finally:
        writer.release()


def _may_retry(error: BaseException, stage: str, mode: Mode, idempotent: bool) -> bool:
    if _deadline_cut():
        return False
    code = code_of(error)
    if code in (Code.TERMINATED, Code.CONFLICT):
        return True  # nothing ran / the server rolled it back
    if code is not Code.CONNECTION_LOST or stage == "connect":
        return False
    return mode == "read" or idempotent or (mode == "write" and stage == "work")


def _translate(
    error: BaseException, stage: str, engine: Engine, mode: Mode, *, retried: bool = False
) -> BaseException:
    """The typed failure for a driver error, or the error itself when it is a bug."""
    url = engine.url
    if _deadline_cut():
        return _Failed(DatabaseTimeout(_TIMEOUT, retry_after=2), None, timed_out=True)
    code = code_of(error)
    if code in (Code.TERMINATED, Code.CONNECTION_LOST) and stage != "connect":
        if mode != "read" and not retried:
            return _Failed(ConnectionLost(_LOST, retry_after=1), connection_lost(error, url), False)
        return _Failed(DatabaseUnavailable(_UNAVAILABLE), connection_lost(error, url), False)
    if code is Code.OVERLOADED or code is Code.LOCK_TIMEOUT or code is Code.CONFLICT:
        return _Failed(DatabaseBusy(_BUSY, retry_after=1), None, False)
    if code is Code.TIMEOUT:
        return _Failed(DatabaseTimeout(_TIMEOUT, retry_after=2), None, timed_out=True)
    if code is Code.DATA:
        return DataRejected(f"The database cannot store a value in this request: {_brief(error)}")
    if code is Code.STORAGE:
        return _Failed(DatabaseUnavailable(f"{_STORAGE} ({_brief(error)})"), None, False)
    if code is Code.SCHEMA:
        return _Failed(DatabaseUnavailable(_SCHEMA), None, False)
    if stage == "connect" or code in _CONNECT_CODES:
        return _Failed(DatabaseUnavailable(_UNAVAILABLE), classify(error, url), False)
    return error


_TIMEOUT = "The database did not answer in time; try again."
_BUSY = "The database is busy; try again."
_STORAGE = "The database cannot write its file"
_SCHEMA = "The database's tables are not the ones this version expects; see the log."
_CONNECT_CODES = frozenset(
    {Code.CANNOT_CONNECT, Code.AUTHENTICATION, Code.DATABASE_MISSING, Code.TLS}
)


def _why_retry(error: BaseException, engine: Engine) -> str:
    if code_of(error) is Code.CONFLICT:
        return "the server rolled it back (deadlock or serialization failure)"
    return f"on a fresh connection, {connection_lost(error, engine.url).message}"


def _deadline_cut() -> bool:
    deadline = request_deadline.get()
    return deadline is not None and deadline.expired


def _brief(error: BaseException) -> str:
    original = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    return sanitize(str(original) or type(original).__name__)[:200]
