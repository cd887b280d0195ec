"""The states a database connection goes through, and what a request is told when it
cannot be served. Shared by the manager, the session dependency and the endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from src.database.failures import Failure
from src.database.sqlite_locator import SqliteLocation


class ConnectionState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING_PRIMARY = "CONNECTING_PRIMARY"
    CONNECTING_FALLBACK = "CONNECTING_FALLBACK"
    PRIMARY_CONNECTED = "PRIMARY_CONNECTED"
    FALLBACK_CONNECTED = "FALLBACK_CONNECTED"
    CONNECTION_ERROR = "CONNECTION_ERROR"
    PRIMARY_UNAVAILABLE = "PRIMARY_UNAVAILABLE"


CONNECTED = frozenset({ConnectionState.PRIMARY_CONNECTED, ConnectionState.FALLBACK_CONNECTED})
DECIDING = frozenset(
    {
        ConnectionState.DISCONNECTED,
        ConnectionState.CONNECTING_PRIMARY,
        ConnectionState.CONNECTING_FALLBACK,
    }
)


class DatabaseNotReady(Exception):
    """A data request cannot be served right now; carries a safe reason."""

    code = "DATABASE_UNAVAILABLE"

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DatabaseStarting(DatabaseNotReady):
    code = "DATABASE_STARTING"


@dataclass
class DatabaseStatus:
    """Everything `/config/database` reports about the connection."""

    state: ConnectionState = ConnectionState.DISCONNECTED
    reason: str = "not started"
    using_fallback: bool = False
    fallback_reason: str | None = None
    last_failure: Failure | None = None
    last_attempt_at: datetime | None = None
    attempts: int = 0
    migrated_revision: str | None = None
    sqlite: SqliteLocation | None = None
    history: list[str] = field(default_factory=list)
