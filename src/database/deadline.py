"""A deadline for every PostgreSQL round trip a request makes.

A server (or a proxy in front of it) that accepts a connection and then stops answering
leaves psycopg waiting on a socket forever: TCP keepalives and `tcp_user_timeout` do
not fire while the peer's kernel still acknowledges our packets, and a cancel request
would travel the same dead path. So a watchdog thread shuts down the socket of any
connection held past its deadline; the blocked call then fails at once with a
connection error, which the app answers with a 503 and the pool discards.

PyMySQL needs none of this (its `read_timeout` bounds every read) and SQLite has no
network. The pre-ping also runs here, after the connection is registered, so that the
ping itself is bounded too (SQLAlchemy's own pre-ping runs before any event could), and
only for a connection that sat idle: under load it would double the round trips.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

# Set per request (in the event loop, so worker threads inherit it).
request_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)

_WATCH_INTERVAL = 0.1
# A connection idle this long is pinged before use (providers and proxies drop idle
# connections; pool_recycle retires them before the usual cut-offs).
PING_AFTER_IDLE_SECONDS = 5.0
_RETURNED_AT = "todo_returned_at"


class DeadlineWatchdog:
    def __init__(self, engine: Engine, default_timeout: float) -> None:
        self._engine = engine
        self._default_timeout = default_timeout
        self._held: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.fired = 0
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)
        event.listen(engine, "engine_disposed", lambda _engine: self.stop())

    def _on_checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        deadline = request_deadline.get() or time.monotonic() + self._default_timeout
        with self._lock:
            self._held[id(dbapi_connection)] = (deadline, dbapi_connection)
            self._ensure_thread()
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
            # Fresh, or in use a moment ago: a ping would cost a round trip per request
            # to learn nothing. If the server died meanwhile, the query fails, the request
            # gets a 503 and the manager's probe takes over.
            return
        try:
            self._engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            self._forget(dbapi_connection)
            # Tells the pool to discard this connection and try a fresh one.
            raise exc.DisconnectionError(f"pre-ping failed: {type(error).__name__}") from error

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()
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
                expired = [(key, conn) for key, (due, conn) in self._held.items() if due <= now]
                for key, _ in expired:
                    del self._held[key]
            for _, connection in expired:
                self._sever(connection)

    def _sever(self, dbapi_connection: Any) -> None:
        try:
            fd = dbapi_connection.fileno()
        except Exception:  # noqa: BLE001 - already closed: nothing left to unblock
            return
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
