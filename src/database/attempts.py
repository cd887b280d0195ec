"""One unit of work against a database: its attempts, and what a failure means.

What a failure means is decided here, from error codes (src.database.error_codes), and
raised as one of src.database.errors:

* a connection the server had already closed (FATAL before our statement ran) is
  discarded and the work retried once on a fresh connection, whatever it is;
* a connection that broke mid-way is retried when that cannot apply a change twice:
  reads, transactions that had not reached COMMIT, and work declared `idempotent`;
  otherwise the client is told the change may or may not have been saved;
* only when the fresh connection fails too (or none can be opened) is the monitor told
  (`Failed.failure`), which confirms an outage with a probe before anyone else is refused;
* a timeout, a lock wait or a deadlock answers this request only.

The same steps run in a worker thread on a sync engine (`run_sync`) or on the event loop
on an asyncio engine (`run_async`, PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Literal, NoReturn, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from src.database.concurrency import gate_for
from src.database.deadline import request_deadline
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

if TYPE_CHECKING:
    # Only the PostgreSQL path has one; SQLAlchemy's asyncio layer is imported there.
    from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

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
_TIMEOUT = "The database did not answer in time; try again."
_BUSY = "The database is busy; try again."
_STORAGE = "The database cannot write its file"
_SCHEMA = "The database's tables are not the ones this version expects; see the log."
_CONNECT_CODES = frozenset(
    {Code.CANNOT_CONNECT, Code.AUTHENTICATION, Code.DATABASE_MISSING, Code.TLS}
)


class Failed(DatabaseError):
    """A typed failure plus what the monitor must hear about it."""

    def __init__(self, error: DatabaseError, failure: Failure | None, timed_out: bool) -> None:
        super().__init__(error.reason, retry_after=error.retry_after)
        self.error = error
        self.failure = failure
        self.timed_out = timed_out


def driver_error(error: BaseException) -> bool:
    """What a unit of work's database calls may raise. The task queries run on the driver's
    cursor (src.database.statements), so the drivers' own errors arrive unwrapped;
    psycopg's and PyMySQL's are told by their module, so that neither driver is imported
    where it is not used."""
    if isinstance(error, sa_exc.SQLAlchemyError | OSError | sqlite3.Error):
        return True
    return isinstance(error, Exception) and type(error).__module__.startswith(
        ("psycopg", "pymysql")
    )


def run_sync(engine: Engine, mode: Mode, idempotent: bool, work: Callable[[Connection], T]) -> T:
    """The unit of work in this (worker) thread, retried once when that is safe."""
    try:
        return _attempt(engine, mode, work)
    except Exception as first:  # noqa: BLE001 - re-raised unless a driver error
        _unless_retried(first, engine, mode, idempotent)
    token = retrying.set(True)
    try:
        return _attempt(engine, mode, work)
    except Exception as second:  # noqa: BLE001 - re-raised unless a driver error
        _raise_final(second, engine, mode)
    finally:
        retrying.reset(token)


async def run_async(
    engine: AsyncEngine, mode: Mode, idempotent: bool, work: Callable[[Connection], T]
) -> T:
    """The unit of work on the event loop (its sync code in SQLAlchemy's greenlet)."""
    try:
        return await _attempt_async(engine, mode, work)
    except Exception as first:  # noqa: BLE001 - re-raised unless a driver error
        _unless_retried(first, engine.sync_engine, mode, idempotent)
    token = retrying.set(True)
    try:
        return await _attempt_async(engine, mode, work)
    except Exception as second:  # noqa: BLE001 - re-raised unless a driver error
        _raise_final(second, engine.sync_engine, mode)
    finally:
        retrying.reset(token)


def raise_translated(
    error: BaseException, stage: str, engine: Engine, mode: Mode, retried: bool
) -> NoReturn:
    translated = _translate(error, stage, engine, mode, retried=retried)
    if translated is error:
        raise error
    raise translated from error


def _unless_retried(error: Exception, engine: Engine, mode: Mode, idempotent: bool) -> None:
    """Return when the work may run again; raise its typed failure otherwise."""
    if not driver_error(error):
        raise error
    stage = getattr(error, "_todo_stage", "work")
    if not _may_retry(error, stage, mode, idempotent):
        raise_translated(error, stage, engine, mode, retried=False)
    logger.info("Retrying the unit of work: %s", _why_retry(error, engine))


def _raise_final(error: Exception, engine: Engine, mode: Mode) -> NoReturn:
    if not driver_error(error):
        raise error
    raise_translated(error, getattr(error, "_todo_stage", "work"), engine, mode, True)


def _attempt(engine: Engine, mode: Mode, work: Callable[[Connection], T]) -> T:
    try:
        with _serialised(engine, mode), engine.connect() as connection:
            return in_transaction(connection, mode, work)
    except BaseException as error:
        if not hasattr(error, "_todo_stage"):
            error._todo_stage = "connect"  # type: ignore[attr-defined]
        raise


async def _attempt_async(engine: AsyncEngine, mode: Mode, work: Callable[[Connection], T]) -> T:
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(in_transaction, mode, work)
    except BaseException as error:
        if not hasattr(error, "_todo_stage"):
            error._todo_stage = "connect"  # type: ignore[attr-defined]
        raise


def in_transaction(connection: Connection, mode: Mode, work: Callable[[Connection], T]) -> T:
    """Begin, `work(connection)`, commit; failures tagged with the stage they hit."""
    stage: Stage = "work"
    try:
        if connection.dialect.name == "sqlite":
            connection.execution_options(**{SQLITE_WRITE: mode != "read"})
        elif mode != "write":
            # Reads and single statements in autocommit: no BEGIN/COMMIT round trips (at
            # READ COMMITTED a read transaction gives no better snapshot anyway).
            connection.execution_options(isolation_level="AUTOCOMMIT")
        transaction = connection.begin()
        try:
            result = work(connection)
            stage = "commit"
            transaction.commit()
        except BaseException as error:
            if code_of(error) in (Code.TERMINATED, Code.CONNECTION_LOST):
                # The driver's own error (raw cursor): tell the pool this connection is
                # dead rather than let it try to reset it.
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
        return Failed(DatabaseTimeout(_TIMEOUT, retry_after=2), None, timed_out=True)
    code = code_of(error)
    if code in (Code.TERMINATED, Code.CONNECTION_LOST) and stage != "connect":
        if mode != "read" and not retried:
            return Failed(ConnectionLost(_LOST, retry_after=1), connection_lost(error, url), False)
        return Failed(DatabaseUnavailable(_UNAVAILABLE), connection_lost(error, url), False)
    if code is Code.OVERLOADED or code is Code.LOCK_TIMEOUT or code is Code.CONFLICT:
        return Failed(DatabaseBusy(_BUSY, retry_after=1), None, False)
    if code is Code.TIMEOUT:
        return Failed(DatabaseTimeout(_TIMEOUT, retry_after=2), None, timed_out=True)
    if code is Code.DATA:
        return DataRejected(f"The database cannot store a value in this request: {_brief(error)}")
    if code is Code.STORAGE:
        return Failed(DatabaseUnavailable(f"{_STORAGE} ({_brief(error)})"), None, False)
    if code is Code.SCHEMA:
        return Failed(DatabaseUnavailable(_SCHEMA), None, False)
    if stage == "connect" or code in _CONNECT_CODES:
        return Failed(DatabaseUnavailable(_UNAVAILABLE), classify(error, url), False)
    return error


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
