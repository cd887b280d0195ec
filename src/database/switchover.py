"""How the SQLite fallback ends: the configured primary answers, the fallback's tasks move
into it (src.database.promotion) and the app switches over, without a restart.

While the fallback serves in place of an unreachable primary, that primary is probed in
the background. A fallback file left from an earlier run for the same primary is moved
the same way at the next start on the primary (`merge_leftovers`).

Workers share the fallback file, and the first to reach the primary moves every task and
hands the file over (its `tasks` table is dropped). The others learn of it from the file —
at their next statement there (the manager's `handed_over`), or within
`_HANDOVER_CHECK_SECONDS` — and switch too, without going back to the fallback even when
they cannot reach the primary yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from src.database.engine import create_database_engine
from src.database.startup import Ready, Refused, Unusable
from src.database.state import ConnectionState

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from src.database.manager import DatabaseManager
    from src.database.promotion import PromotionReport

logger = logging.getLogger(__name__)

_WATCH_DELAY_MAX = 30.0
# The first pause before probing a primary that refused us.
_REFUSED_DELAY = 5.0
# How long a switch waits for units of work still running on the fallback.
_DRAIN_SECONDS = 30.0
# While on the fallback: how often to look whether another worker handed it over.
_HANDOVER_CHECK_SECONDS = 1.0


class Switchover:
    def __init__(self, manager: DatabaseManager) -> None:
        self.manager = manager
        # Requests wait (bounded) while this is set: the database is being changed.
        self.switching = False
        # The fallback's tasks are in the primary: never serve the fallback again.
        self.handed_over = False
        self._wake = asyncio.Event()
        self._watching = False

    async def watch_primary(self, *, refused: bool = False) -> None:
        """While serving in place of the primary: probe it; when it can be used, move the
        fallback's tasks into it and switch. `refused`: it answered and refused us (a
        login, a database missing), so probes start slow — a server that bans clients
        after failed logins must not see one every few hundred milliseconds."""
        self._watching = True
        try:
            await self._watch_primary(refused)
        finally:
            self._watching = False

    async def _watch_primary(self, refused: bool) -> None:
        manager = self.manager
        delay = _REFUSED_DELAY if refused else manager.settings.database_retry_delay_ms / 1000
        while True:
            await self._pause(delay)
            delay = min(delay * 2, _WATCH_DELAY_MAX)
            engine = manager.new_primary_engine()
            outcome = await manager.policy.attempt(engine)
            if isinstance(outcome, Ready):
                if await self._promote(engine, outcome):
                    return
                continue
            await asyncio.to_thread(engine.dispose)
            if isinstance(outcome, Unusable):
                # It answers: the fallback's reason is gone, and the primary cannot be
                # used. Stop writing to SQLite; its tasks stay there until it can.
                database = await manager.stop_serving()
                if database is not None:
                    await asyncio.to_thread(database.engine.dispose)
                manager._refuse_primary(outcome.failure)
                delay = max(delay, 5.0)
            elif self.handed_over:
                # The tasks are in the primary now: wait for it, fail fast meanwhile.
                self.switching = False
                manager.status.transition(
                    ConnectionState.PRIMARY_UNAVAILABLE,
                    "The SQLite fallback's tasks were moved into the primary database, which "
                    f"this worker cannot reach at the moment: {outcome.failure.describe()}",
                )
                delay = manager.settings.database_retry_delay_ms / 1000
            elif isinstance(outcome, Refused):
                manager.status.fallback_reason = (
                    f"The primary database could not be used ({outcome.failure.describe()})."
                )
                delay = max(delay, _REFUSED_DELAY)

    def note_handed_over(self) -> None:
        """Another worker moved the fallback's tasks into the primary: stop serving the
        fallback now (requests wait for the switch) and try the primary at once."""
        if self.handed_over:
            return
        self.handed_over = True
        self.switching = True
        self.manager.status.transition(
            ConnectionState.CONNECTING_PRIMARY,
            "another worker moved the SQLite fallback's tasks into the primary; switching to it",
        )
        logger.info("Another worker moved the fallback's tasks into the primary; switching")
        self._wake.set()
        if not self._watching:  # a fallback for a primary that refused us at start
            self.manager.spawn(self.watch_primary())

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`; cut short when another worker handed the fallback over (told
        by a request, or seen in the file) or serves the primary (src.database.
        primary_in_use): this one then tries the primary at once."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while not self._wake.is_set() and (left := until - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=min(left, _HANDOVER_CHECK_SECONDS)
                )
            if not self.handed_over and await self._handed_over_elsewhere():
                self.note_handed_over()
            elif await asyncio.to_thread(self.manager.primary_in_use.elsewhere):
                break
        self._wake.clear()

    async def _handed_over_elsewhere(self) -> bool:
        engine, url = self.manager.engine, self.manager.primary_url
        if engine is None or url is None or engine.url.get_backend_name() != "sqlite":
            return False
        from src.database.promotion import handed_over  # only while on a fallback

        try:
            return await asyncio.to_thread(handed_over, engine, url)
        except Exception:  # the file answers the next look, or a request does
            logger.debug("Could not look for a hand-over of the fallback", exc_info=True)
            return False

    async def _promote(self, primary: Engine, outcome: Ready) -> bool:
        manager = self.manager
        url = manager.primary_url
        assert url is not None
        self.switching = True
        current = await manager.stop_serving()
        try:
            if current is None:
                # The fallback had stopped serving already (the primary answered and was
                # refused): its file is moved like an earlier run's, only if it stood in
                # for this primary, and never created where it is missing.
                await manager.fallback.replica.stop()
                await self.merge_leftovers(primary)
                manager.status.fallback_reason = None
                manager.serve(primary, primary=True, outcome=outcome)
                logger.info("Switched to the primary database")
                return True
            fallback = current.engine
            await _drained(fallback)
            from src.database.promotion import move_tasks  # only once a fallback served

            try:
                report = await asyncio.to_thread(move_tasks, fallback, primary, url)
            except Exception:
                logger.exception("Moving the fallback's tasks into the primary failed")
                await asyncio.to_thread(primary.dispose)
                if not self.handed_over:
                    manager.serve(current.engine, primary=False, outcome=outcome)
                return False
            manager.status.promotion = report.describe()
            manager.status.fallback_reason = None
            manager.serve(primary, primary=True, outcome=outcome)
            logger.info("Switched to the primary database: %s", manager.status.promotion)
            await asyncio.to_thread(fallback.dispose)
            await manager.fallback.replica.stop()  # its last sync ships the hand-over
            return True
        finally:
            self.switching = False

    async def merge_leftovers(self, primary: Engine) -> None:
        """Before serving `primary`: tasks that a fallback for this same primary kept from
        an earlier run are moved in first (from the app's SQLite file, or the fallback's
        own file beside it). A file that is not on this disk is restored from its replica
        first, when one is configured (src.database.replica_leftovers); otherwise only
        files that exist are looked at: nothing is created here."""
        manager = self.manager
        url = manager.primary_url
        location = await asyncio.to_thread(manager.sqlite_location)
        if url is None or location.path is None:
            return
        from src.database import fallback_file  # only where a SQLite file may be left
        from src.replication import replica_config

        files = [
            (location.path, replica_config(manager.settings)),
            (
                fallback_file.own_file(location.path, url),
                replica_config(manager.settings, beside=fallback_file.sibling_suffix(url)),
            ),
        ]
        for path, replica in files:
            if replica is None or not replica.valid:
                if path.is_file():
                    await self._merge_file(primary, path)
                continue
            from src.database import replica_leftovers as leftovers

            try:
                async with leftovers.turn(path):
                    here = await asyncio.to_thread(leftovers.restore_if_missing, replica, path)
                    if here is None:
                        continue
                    report = await self._merge_file(primary, path)
                    if report is None:
                        continue
                    # A hand-over made here, or one an earlier run made on this disk and
                    # may not have shipped (it died first): the replica must hear of it.
                    unshipped = (
                        report.earlier
                        and here == "present"
                        and not await asyncio.to_thread(leftovers.replicated, path)
                    )
                    if (report.handed_over or unshipped) and await asyncio.to_thread(
                        leftovers.ship, replica, path
                    ):
                        await asyncio.to_thread(leftovers.mark_replicated, path)
            except leftovers.ReplicaUnreadable:
                break  # the other file's replica is on the same endpoint
            except OSError:
                logger.warning(
                    "An earlier fallback's file %s could not be looked at", path, exc_info=True
                )

    async def _merge_file(self, primary: Engine, path: Path) -> PromotionReport | None:
        """Move the tasks of the fallback file `path` (if it is one for this primary) into
        `primary`; the report, or None when the move failed (logged)."""
        manager = self.manager
        url = manager.primary_url
        assert url is not None
        from src.database.promotion import move_tasks

        location = await asyncio.to_thread(manager.sqlite_location)
        fallback = create_database_engine(
            dataclasses.replace(location, path=path).url, manager.settings
        )
        try:
            report: PromotionReport = await asyncio.to_thread(
                partial(move_tasks, fallback, primary, url, only_if_marked=True)
            )
        except Exception:
            logger.exception("Moving an earlier fallback's tasks into the primary failed")
            return None
        finally:
            await asyncio.to_thread(fallback.dispose)
        if report.seen:
            manager.status.promotion = report.describe()
            logger.info("Moved an earlier fallback's tasks: %s", report.describe())
        return report


async def _drained(engine: Engine) -> None:
    from src.database.concurrency import gate_for

    limiter = gate_for(engine).limiter
    for _ in range(int(_DRAIN_SECONDS / 0.02)):
        if limiter.borrowed_tokens == 0:
            return
        await asyncio.sleep(0.02)
