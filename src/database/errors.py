"""The failures the database layer raises to the layers above it.

Each carries a sentence that is safe to show a client (no host, user or password), a
stable `code` and, for the retryable ones, `retry_after` seconds. The HTTP status for
each is decided in one place, `src.http.exception_handlers`; nothing here knows HTTP.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base: a data request could not be served. `reason` is safe to show anyone."""

    code = "DATABASE_UNAVAILABLE"

    def __init__(self, reason: str, *, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DatabaseStarting(DatabaseError):
    """The start-up decision (or a restore) is still being made."""

    code = "DATABASE_STARTING"


class DatabaseUnavailable(DatabaseError):
    """No database can serve: a confirmed outage, none configured, or one we must not use
    (a schema this version cannot migrate, a replica that could not be read)."""

    code = "DATABASE_UNAVAILABLE"


class DatabaseTimeout(DatabaseError):
    """This request's statement ran out of time; the database itself is up."""

    code = "DATABASE_TIMEOUT"


class DatabaseBusy(DatabaseError):
    """A lock wait, a deadlock or a full pool: retry shortly."""

    code = "DATABASE_BUSY"


class ConnectionLost(DatabaseError):
    """The connection broke after a change was sent: it may or may not have been saved."""

    code = "DATABASE_CONNECTION_LOST"


class DataRejected(Exception):
    """The database refused a value this request sent (a client error, not an outage)."""

    code = "DATA_REJECTED"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
