"""Run one unit of work (a whole transaction) in a single worker thread.

Routes are `async` and hand the complete transaction to the thread pool in one hop:
open a connection, begin, run the service function, commit, return it. Splitting that over
several hops (a sync session dependency, then a sync route) would hold SQLite's
write lock (BEGIN IMMEDIATE) while waiting for a free worker thread, and under load
every worker can end up waiting for the lock holder's next hop.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Concatenate, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from src.database.concurrency import gate_for
from src.database.engine import SQLITE_BUSY_TIMEOUT_MS
from src.database.session import open_connection

P = ParamSpec("P")
T = TypeVar("T")


def _read(
    engine: Engine, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    with open_connection(engine, write=False) as connection:
        return work(connection, *args, **kw)


def _write(
    engine: Engine,
    single_statement: bool,
    work: Callable[Concatenate[Connection, P], T],
    *args: P.args,
    **kw: P.kwargs,
) -> T:
    writer = gate_for(engine).writer
    serialised = _held(writer) if writer is not None else contextlib.nullcontext()
    with (
        serialised,
        open_connection(engine, write=True, single_statement=single_statement) as connection,
    ):
        return work(connection, *args, **kw)


@contextlib.contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise PoolTimeoutError("timed out waiting for SQLite's write lock")
    try:
        yield
    finally:
        lock.release()


async def read(
    engine: Engine, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    """`work(connection, …)` in a read-only transaction (SQLite: never waits for writers)."""
    call = partial(_read, engine, work, *args, **kw)
    return await anyio.to_thread.run_sync(call, limiter=gate_for(engine).limiter)


async def write(
    engine: Engine, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    """`work(connection, …)` in a transaction that is committed when it returns."""
    call = partial(_write, engine, False, work, *args, **kw)
    return await anyio.to_thread.run_sync(call, limiter=gate_for(engine).limiter)


async def write_one(
    engine: Engine, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    """Like `write`, for work that is a single statement (atomic on its own)."""
    call = partial(_write, engine, True, work, *args, **kw)
    return await anyio.to_thread.run_sync(call, limiter=gate_for(engine).limiter)
