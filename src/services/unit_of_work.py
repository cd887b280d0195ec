"""Run one unit of work (a whole transaction) in a single worker thread.

Routes are `async` and hand the complete transaction to the thread pool in one hop:
open the session, run the service function, commit, close. Splitting that over
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
from sqlalchemy.engine import Engine
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import Session

from src.database.concurrency import gate_for
from src.database.engine import SQLITE_BUSY_TIMEOUT_MS
from src.database.session import open_session

P = ParamSpec("P")
T = TypeVar("T")


def _read(
    engine: Engine, work: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    with open_session(engine, write=False) as session:
        return work(session, *args, **kw)


def _write(
    engine: Engine, work: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    writer = gate_for(engine).writer
    serialised = _held(writer) if writer is not None else contextlib.nullcontext()
    with serialised, open_session(engine, write=True) as session:
        result = work(session, *args, **kw)
        session.commit()
        return result


@contextlib.contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise PoolTimeoutError("timed out waiting for SQLite's write lock")
    try:
        yield
    finally:
        lock.release()


async def read(
    engine: Engine, work: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    """`work(session, …)` in a read-only transaction (SQLite: never waits for writers)."""
    call = partial(_read, engine, work, *args, **kw)
    return await anyio.to_thread.run_sync(call, limiter=gate_for(engine).limiter)


async def write(
    engine: Engine, work: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    """`work(session, …)` in a transaction that is committed when it returns."""
    call = partial(_write, engine, work, *args, **kw)
    return await anyio.to_thread.run_sync(call, limiter=gate_for(engine).limiter)
