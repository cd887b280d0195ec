"""Find a pooled PostgreSQL/MySQL connection dead before a request uses it.

Servers close idle sessions (`idle_session_timeout`, `wait_timeout`, `pg_terminate_backend`,
Neon suspending a compute), and the pool hands the corpse to the next request. A server
that closes a session first writes a FATAL message or an end-of-file onto the socket,
so a connection with unread bytes while idle is almost surely dead: checking that costs
one `poll()` call, no round trip. Such a connection, or one idle long enough that a
proxy may have dropped it silently, is pinged; if the ping fails, the pool discards it and
opens a fresh one (SQLAlchemy retries a checkout that raises DisconnectionError).
"""

from __future__ import annotations

import contextlib
import select
import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

# Providers and proxies drop idle connections (`pool_recycle` retires them before the
# usual cut-offs); past this idle time a silent drop is likely enough to ping.
PING_AFTER_IDLE_SECONDS = 5.0
_RETURNED_AT = "todo_returned_at"


def install(engine: Engine) -> None:
    """Check each connection as it leaves the pool (register after the deadline watchdog,
    which then bounds the ping)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None:
            return  # just opened
        idle = time.monotonic() - returned_at
        if idle < PING_AFTER_IDLE_SECONDS and not _has_unread_bytes(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"stale connection: {type(error).__name__}") from error


def _has_unread_bytes(dbapi_connection: Any) -> bool:
    fd = socket_fd(dbapi_connection)
    if fd is None:
        return True  # cannot tell: ping
    with contextlib.suppress(OSError, ValueError):
        # poll, not select: select cannot watch descriptors above 1023.
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    return True


def socket_fd(dbapi_connection: Any) -> int | None:
    """The connection's socket descriptor (None when closed or unknown): psycopg's, the
    psycopg connection inside SQLAlchemy's asyncio adapter, or PyMySQL's."""
    inner = getattr(dbapi_connection, "_connection", None)  # SQLAlchemy's asyncio adapter
    fileno = getattr(dbapi_connection, "fileno", None) or getattr(inner, "fileno", None)
    if fileno is None:
        sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL keeps it private
        fileno = getattr(sock, "fileno", None)
    try:
        return int(fileno()) if callable(fileno) else None
    except Exception:  # noqa: BLE001 - a closed connection raises its driver's own error
        return None
