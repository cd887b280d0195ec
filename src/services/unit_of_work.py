"""Run one unit of work (a whole transaction) in a single worker thread.

Routes are `async` and hand the complete transaction to the thread pool in one hop:
open the session, run the service function, commit, close. Splitting that over
several hops (a sync session dependency, then a sync route) would hold SQLite's
write lock (BEGIN IMMEDIATE) while waiting for a free worker thread, and under load
every worker can end up waiting for the lock holder's next hop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

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
    with open_session(engine, write=True) as session:
        result = work(session, *args, **kw)
        session.commit()
        return result


async def read(
    engine: Engine, work: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    """`work(session, …)` in a read-only transaction (SQLite: never waits for writers)."""
    return await run_in_threadpool(lambda: _read(engine, work, *args, **kw))


async def write(
    engine: Engine, work: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs
) -> T:
    """`work(session, …)` in a transaction that is committed when it returns."""
    return await run_in_threadpool(lambda: _write(engine, work, *args, **kw))
