"""The states a database connection goes through (the seeds' data model), and the record
of them that `/config/database`, the status page and the log report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from src.database.failures import Failure
from src.database.sqlite_locator import SqliteLocation

_HISTORY = 20


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
    # What moving the fallback's tasks into the primary did, once it has.
    promotion: str | None = None
    history: list[str] = field(default_factory=list)

    def transition(self, state: ConnectionState, why: str) -> None:
        if state is not self.state:
            self.history.append(f"{datetime.now(UTC).isoformat()} {state.value}: {why}")
            del self.history[:-_HISTORY]
        self.state = state
        self.reason = why

    def attempted(self, failure: Failure | None) -> None:
        self.attempts += 1
        self.last_attempt_at = datetime.now(UTC)
        if failure is not None:
            self.last_failure = failure
