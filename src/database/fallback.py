"""The SQLite fallback: when it may start, and opening it.

The fallback exists for a missing or unusable URL, or a primary nobody answers. Where a
replica is configured, the file is restored from it first, and an unreadable replica
keeps the fallback closed (never an empty database over a good replica). How the fallback
ends — when a configured primary answers — is src.database.switchover.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import TYPE_CHECKING

from src.database.engine import create_database_engine
from src.database.replica import SqliteReplica
from src.database.startup import Ready
from src.database.state import ConnectionState

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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
        status.using_fallback = True
        await self._restore_then_open(location, primary_configured)

    async def _restore_then_open(self, location: SqliteLocation, primary_configured: bool) -> None:
        status = self.manager.status
        status.sqlite = location
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
                self.manager.spawn(self._open_once_the_replica_allows(location, primary_configured))
                return
        elif not location.persistent:
            logger.warning("SQLite is not persistent: %s", location.persistence_note)
        await self._choose_then_open(location, primary_configured)

    async def _open_once_the_replica_allows(
        self, location: SqliteLocation, primary_configured: bool
    ) -> None:
        await self.replica.until_openable()
        logger.info("The SQLite replica can be read now; opening the database")
        self.manager.status.transition(ConnectionState.CONNECTING_FALLBACK, "replica restored")
        await self._choose_then_open(location, primary_configured)

    async def _choose_then_open(self, location: SqliteLocation, primary_configured: bool) -> None:
        """Open `location`, or — standing in for a primary, when its file holds other
        tasks (src.database.fallback_file) — a fallback file of the primary's own."""
        primary = self.manager.primary_url
        if primary_configured and primary is not None:
            from src.database import fallback_file  # only on a fallback

            try:
                own = await asyncio.to_thread(fallback_file.fallback_location, location, primary)
            except sqlite3.Error:
                own = location  # opening it fails too, and says why
            if own.path != location.path:
                logger.warning(
                    "The SQLite file at %s holds tasks that were not written in place of "
                    "this DATABASE_URL (without one, or for another database); the fallback "
                    "uses %s instead, so that they are never moved into it",
                    location.path,
                    own.path,
                )
                await self.replica.move_beside(fallback_file.sibling_suffix(primary))
                await self._restore_then_open(own, primary_configured)
                return
        await self._open(location, primary_configured)

    async def _open(self, location: SqliteLocation, primary_configured: bool) -> None:
        manager = self.manager
        status = manager.status
        engine = create_database_engine(location.url, manager.settings, litestream=self.replicating)
        outcome = await manager.policy.attempt(engine)
        if isinstance(outcome, Ready):
            if await self._mark(engine, primary_configured):
                manager.serve(engine, primary=False, outcome=outcome)
                return
            await asyncio.to_thread(engine.dispose)
            status.transition(
                ConnectionState.CONNECTION_ERROR,
                f"The SQLite file at {location.path} took tasks of another database while "
                "the fallback was being opened; it is not used in place of DATABASE_URL.",
            )
            return
        await asyncio.to_thread(engine.dispose)
        failure = status.last_failure
        status.transition(
            ConnectionState.CONNECTION_ERROR,
            f"SQLite at {location.path or 'memory'} failed: "
            f"{failure.describe() if failure else 'unknown'}",
        )

    async def _mark(self, engine: Engine, primary_configured: bool) -> bool:
        """Record what the file is now: a primary's fallback, or the app's own database."""
        from src.database import fallback_file  # only with SQLite

        primary = self.manager.primary_url
        if primary_configured and primary is not None:
            return await asyncio.to_thread(fallback_file.claim, engine, primary)
        if self.manager.resolution.present:
            # A DATABASE_URL that is set but unusable (a typo) still names the database the
            # user means: a fallback file for it stays marked, to be moved once it is fixed.
            return True
        adopted = await asyncio.to_thread(fallback_file.release, engine)
        if adopted:
            logger.warning(
                "This SQLite file held %d task(s) written in place of a database that is not "
                "configured now; they are this database's own from now on (python -m src "
                "copy moves them to a server)",
                adopted,
            )
        return True
