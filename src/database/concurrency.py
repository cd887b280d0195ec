"""How much database work runs at once, per engine.

Each unit of work runs in a worker thread. Letting every thread of the thread pool
(40) at the database only adds contention on two cores: the connection pool churns
(connections beyond its size are opened and closed per request) and threads fight
for the GIL. So each engine gets a limiter sized to its pool, and SQLite, which
allows one writer at a time anyway, gets an in-process writer lock: writers queue on
it instead of sleeping in SQLite's busy handler (which backs off up to 100 ms at a
time and made the slowest writes ten times slower than the median).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

# SQLite work is short and CPU-bound: a few threads keep both cores busy.
SQLITE_WORKERS = 4


@dataclass(frozen=True)
class Gate:
    limiter: anyio.CapacityLimiter
    writer: threading.Lock | None  # SQLite only: one writing transaction at a time


_gates: weakref.WeakKeyDictionary[Engine, Gate] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def gate_for(engine: Engine) -> Gate:
    """The engine's gate (created on first use, inside the event loop)."""
    gate = _gates.get(engine)
    if gate is None:
        with _lock:
            gate = _gates.get(engine)
            if gate is None:
                gate = _new_gate(engine)
                _gates[engine] = gate
    return gate


def _new_gate(engine: Engine) -> Gate:
    if engine.url.get_backend_name() == "sqlite":
        return Gate(anyio.CapacityLimiter(SQLITE_WORKERS), threading.Lock())
    pool = engine.pool
    # As many as the pool keeps open: more threads only wait for a connection or the GIL
    # (measured: 15 threads gave 25 % fewer creates per second than 5, and a longer tail).
    size = pool.size() if isinstance(pool, QueuePool) else 10
    return Gate(anyio.CapacityLimiter(max(1, size)), None)
