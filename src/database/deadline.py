"""A deadline for every PostgreSQL round trip a request makes.

A server (or a proxy in front of it) that accepts a connection and then stops answering
leaves psycopg waiting on a socket forever: TCP keepalives and `tcp_user_timeout` do
not fire while the peer's kernel still acknowledges our packets, and a cancel request
would travel the same dead path. So a watchdog thread shuts down the socket of any
connection held past its deadline; the blocked call then fails at once with a
connection error, which the app answers with a 503 and the pool discards.

PyMySQL needs none of this (its `read_timeout` bounds every read) and SQLite has no
network. The liveness check (src.database.liveness) runs after this hook registers the
connection, so its ping is bounded too. A cut is recorded on the request's `Deadline`, so
that the error which follows is answered as this request's timeout, not as an outage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from src.database.liveness import socket_fd

logger = logging.getLogger(__name__)

_WATCH_INTERVAL = 0.1


@dataclass
class Deadline:
    """When a request's database work must end (`time.monotonic()` seconds), and whether
    the watchdog had to cut a connection to end it."""

    due: float
    expired: bool = False

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)


# Set per request, in the event loop; worker threads inherit it (and share the object).
request_deadline: ContextVar[Deadline | None] = ContextVar("request_deadline", default=None)


class DeadlineWatchdog:
    def __init__(self, engine: Engine, default_timeout: float) -> None:
        self._engine = engine
        self._default_timeout = default_timeout
        self._held: dict[int, tuple[Deadline, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.fired = 0
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)
        event.listen(engine, "invalidate", self._on_invalidate)
        event.listen(engine, "engine_disposed", lambda _engine: self.stop())

    def _on_checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        deadline = request_deadline.get() or Deadline.after(self._default_timeout)
        with self._lock:
            self._held[id(dbapi_connection)] = (deadline, dbapi_connection)
            self._ensure_thread()

    def _on_checkin(self, dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            self._forget(dbapi_connection)

    def _on_invalidate(self, dbapi_connection: Any, _record: Any, _exception: Any) -> None:
        if dbapi_connection is not None:
            self._forget(dbapi_connection)

    def _forget(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._held.pop(id(dbapi_connection), None)

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._watch, name="db-deadline", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stopped:
            self._wake.wait(_WATCH_INTERVAL)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                expired = [
                    (key, deadline, conn)
                    for key, (deadline, conn) in self._held.items()
                    if deadline.due <= now
                ]
                for key, _, _ in expired:
                    del self._held[key]
            for _, deadline, connection in expired:
                deadline.expired = True
                self._sever(connection)

    def _sever(self, dbapi_connection: Any) -> None:
        fd = socket_fd(dbapi_connection)
        if fd is None:
            return  # already closed: nothing left to unblock
        self.fired += 1
        logger.warning("A database call outlived its deadline; closing its connection")
        with contextlib.suppress(OSError):
            # A duplicate descriptor shares the socket: shutting it down wakes the
            # thread blocked on the original, without closing a descriptor it owns.
            duplicate = socket.socket(fileno=os.dup(fd))
            try:
                duplicate.shutdown(socket.SHUT_RDWR)
            finally:
                duplicate.close()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
