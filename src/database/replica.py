"""The SQLite file's replica (src.replication), as the fallback runner uses it.

The file is opened only once the replica allowed it (restored, confirmed empty, or the
file already there): opening it earlier would let Litestream upload a fresh, empty
database over a good replica. Waiting is done in short steps so that shutdown can cancel
it at any moment.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from src.config.settings import Settings
from src.replication import Replication, replica_config

logger = logging.getLogger(__name__)

_STEP_SECONDS = 0.25


class SqliteReplica:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = replica_config(settings)
        self.replication: Replication | None = None

    async def move_beside(self, suffix: str) -> None:
        """Stop replicating the configured file; the next `begin` replicates a file kept
        beside it, to the configured replica path plus `suffix` (never over the other)."""
        await self.stop()
        self.config = replica_config(self.settings, beside=suffix)

    @property
    def configured(self) -> bool:
        return self.config is not None

    @property
    def running(self) -> bool:
        return self.replication is not None

    def begin(self, path: Path | None) -> None:
        """Elect, restore and replicate in the background (nothing for a memory database)."""
        if self.config is None or self.replication is not None:
            return
        for warning in self.config.warnings:
            logger.warning("SQLITE_REPLICA_URL: %s", warning)
        if path is None:
            logger.warning(
                "SQLITE_REPLICA_URL is ignored: the SQLite database is in memory (no file "
                "could be written), so there is nothing to replicate."
            )
            return
        self.replication = Replication(self.config, path)
        self.replication.start()

    async def first_decision(self) -> bool:
        """Until the replica decided whether the file may be opened; True when it may."""
        replication = self.replication
        if replication is None:
            return True
        while not await asyncio.to_thread(replication.wait_decided, _STEP_SECONDS):
            pass
        # The leader decides, then lets Litestream pick the file up before it says ready.
        for _ in range(int(60 / _STEP_SECONDS)):
            if await asyncio.to_thread(replication.wait_ready, _STEP_SECONDS):
                return True
            if self._refused():
                return False
        return replication.database_ready

    async def until_openable(self) -> None:
        """Until the file may be opened (the replica keeps being retried meanwhile)."""
        replication = self.replication
        assert replication is not None
        while not await asyncio.to_thread(replication.wait_ready, _STEP_SECONDS):
            pass

    def reason(self) -> str:
        """Why the file may not be opened yet, in a sentence naming no credential."""
        assert self.config is not None
        status = self.status() or {}
        why = status.get("last_error") or "; ".join(self.config.errors) or "unknown reason"
        return (
            f"The SQLite replica {self.config.masked_url} could not be read ({why}). The app "
            "does not start an empty database over it; data requests answer 503 and the "
            "replica is retried in the background."
        )

    def status(self) -> dict[str, Any] | None:
        if self.replication is None:
            if self.config is None:
                return None
            return {
                "state": "invalid" if self.config.errors else "disabled",
                "replica_url": self.config.masked_url,
                "last_error": "; ".join(self.config.errors) or None,
            }
        return self.replication.status().as_dict()

    async def stop(self) -> None:
        """After the engine is closed: Litestream's bounded final sync."""
        replication, self.replication = self.replication, None
        if replication is not None:
            await asyncio.to_thread(replication.stop)

    def _refused(self) -> bool:
        status = self.status() or {}
        return status.get("state") in ("unreadable", "invalid", "error") and not (
            self.replication is not None and self.replication.database_ready
        )
