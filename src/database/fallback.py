"""The SQLite fallback: when it may start, and opening it.

The fallback exists for a missing or unusable URL, or a primary nobody answers. Where a
replica is configured, the file is restored from it first, and an unreadable replica
keeps the fallback closed (never an empty database over a good replica). How the fallback
ends — when a configured primary answers — is src.database.switchover.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from src.database.engine import create_database_engine
from src.database.replica import SqliteReplica
from src.database.startup import Ready
from src.database.state import ConnectionState

if TYPE_CHECKING:
    from src.database.manager import DatabaseManager
    from src.database.sqlite_locator import SqliteLocation

logger = logging.getLogger(__name__)


class FallbackRunner:
    def __init__(self, manager: DatabaseManager) -> None:
        self.manager = manager
        self.replica = SqliteReplica(manager.settings)

    @property
    def replicating(self) -> bool:
        """Litestream holds the SQLite file (so: no TRUNCATE checkpoint)."""
        return self.replica.running

    async def start_if_allowed(self, *, primary_configured: bool) -> None:
        manager = self.manager
        status = manager.status
        policy = manager.settings.database_fallback
        if policy == "never" or (policy == "invalid-only" and primary_configured):
            reason = status.fallback_reason or "The primary database could not be used."
            status.fallback_reason = None
            status.transition(
                ConnectionState.CONNECTION_ERROR,
                f"{reason} DATABASE_FALLBACK={policy}: SQLite is not used.",
            )
            logger.error("No database: %s", status.reason)
            return
        status.transition(ConnectionState.CONNECTING_FALLBACK, status.fallback_reason or "")
        location = await asyncio.to_thread(manager.sqlite_location)
        status.sqlite = location
        status.using_fallback = True
        self.replica.begin(location.path)
        if self.replica.running:
            assert self.replica.config is not None
            status.transition(
                ConnectionState.CONNECTING_FALLBACK,
                f"restoring the SQLite database from {self.replica.config.masked_url}",
            )
            if not await self.replica.first_decision():
                status.transition(ConnectionState.CONNECTION_ERROR, self.replica.reason())
                logger.error("%s", status.reason)
                manager.spawn(self._open_once_the_replica_allows(location, primary_configured))
                return
        elif not location.persistent:
            logger.warning("SQLite is not persistent: %s", location.persistence_note)
        await self._open(location, primary_configured)

    async def _open_once_the_replica_allows(
        self, location: SqliteLocation, primary_configured: bool
    ) -> None:
        await self.replica.until_openable()
        logger.info("The SQLite replica can be read now; opening the database")
        self.manager.status.transition(ConnectionState.CONNECTING_FALLBACK, "replica restored")
        await self._open(location, primary_configured)

    async def _open(self, location: SqliteLocation, primary_configured: bool) -> None:
        manager = self.manager
        status = manager.status
        engine = create_database_engine(location.url, manager.settings, replicated=self.replicating)
        outcome = await manager.policy.attempt(engine)
        if isinstance(outcome, Ready):
            if primary_configured:
                assert manager.resolution.url is not None
                from src.database.promotion import mark_fallback_for  # only on a fallback

                await asyncio.to_thread(mark_fallback_for, engine, manager.resolution.url)
            manager.serve(engine, primary=False, outcome=outcome)
            return
        await asyncio.to_thread(engine.dispose)
        failure = status.last_failure
        status.transition(
            ConnectionState.CONNECTION_ERROR,
            f"SQLite at {location.path or 'memory'} failed: "
            f"{failure.describe() if failure else 'unknown'}",
        )
