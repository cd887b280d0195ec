"""Which database the app uses, and its state over the life of the process.

Start-up (in the background, so liveness never waits) applies the policy of
src.database.startup once: the primary with bounded retries; SQLite when the URL is
missing or unusable, or the primary stays unreachable and `DATABASE_FALLBACK=auto`;
nothing — readiness 503 and the reason — when the primary answers but cannot be used.

At run time a request that sees the database fail tells the manager (it is the
`FaultMonitor` of every `Database` handle). One failed connection is not an outage: a
probe on a fresh connection confirms it first. A confirmed outage makes data requests
fail fast with 503 until a probe sees the primary again. The app never switches to SQLite
mid-run: that would split the data in two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError

from src.config.settings import Settings
from src.core.redaction import redactor
from src.database.engine import checkpoint_sqlite, create_database_engine
from src.database.errors import DatabaseBusy, DatabaseStarting, DatabaseUnavailable
from src.database.failures import Failure, for_source
from src.database.fallback import FallbackRunner
from src.database.inline import InlineSqlite
from src.database.migrations import upgrade_to_head
from src.database.primary_in_use import PrimaryInUse
from src.database.resolver import Resolution, describe_server, resolve_database_url
from src.database.sqlite_locator import SqliteLocation, locate_for
from src.database.startup import Ready, Refused, StartupPolicy, Unusable
from src.database.state import CONNECTED, DECIDING, ConnectionState, DatabaseStatus
from src.database.switchover import Switchover
from src.database.transactions import Database

logger = logging.getLogger(__name__)

_RECOVERY_DELAY_MAX = 5.0
_BACKGROUND_RETRY_MAX = 30.0
# After a request-level failure, at most one confirming probe per this many seconds.
_PROBE_INTERVAL = 1.0


class DatabaseManager:
    def __init__(
        self,
        settings: Settings,
        *,
        migrate: Callable[[Engine], str | None] = upgrade_to_head,
    ) -> None:
        self.settings = settings
        raw, source = settings.primary_url_input
        self.resolution: Resolution = resolve_database_url(raw, source=source)
        redactor.add(*self.resolution.secrets())
        redactor.add_username(*self.resolution.usernames())
        self.status = DatabaseStatus()
        self.policy = StartupPolicy(settings, self.status, migrate)
        self._location: SqliteLocation | None = None
        self._database: Database | None = None
        self._probe_engine: Engine | None = None
        self._decided = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._probing = False
        self._probed_at = 0.0
        self.fallback = FallbackRunner(self)
        self.switchover = Switchover(self)
        self.primary_in_use = PrimaryInUse(None)

    # -- public surface ----------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self.status.state

    @property
    def engine(self) -> Engine | None:
        return self._database.engine if self._database is not None else None

    @property
    def ready(self) -> bool:
        return self.status.state in CONNECTED and self._database is not None

    @property
    def primary_url(self) -> URL | None:
        return self.resolution.url if self.resolution.ok else None

    def sqlite_location(self) -> SqliteLocation:
        """Where the SQLite database is (found once, by the lifespan or on first need)."""
        if self._location is None:
            self._location = locate_for(self.settings)
        return self._location

    async def start(self, *, location: SqliteLocation | None = None) -> None:
        """Begin deciding in the background; returns at once. `location`: where SQLite
        lives, when the caller has already found it (the lifespan finds it once)."""
        if location is not None:
            self._location = location
        self.primary_in_use = PrimaryInUse(self._location.path if self._location else None)
        self.spawn(self._decide())

    async def wait_decided(self) -> None:
        """Until start-up has chosen a database (or given up)."""
        await self._decided.wait()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        database = await self.stop_serving()
        if database is not None:
            await asyncio.to_thread(self._close_engine, database.engine)
        # After the engine: Litestream's final sync then holds every committed write.
        await self.fallback.replica.stop()
        self.primary_in_use.release()
        if self._probe_engine is not None:
            await asyncio.to_thread(self._probe_engine.dispose)
            self._probe_engine = None
        self.status.transition(ConnectionState.DISCONNECTED, "shut down")

    async def acquire(self) -> Database:
        """The database for a data request; raises DatabaseStarting or DatabaseUnavailable."""
        if self.ready:
            assert self._database is not None
            return self._database
        if self.status.state in DECIDING or self.switchover.switching:
            timeout = self.settings.database_connect_timeout
            try:
                await asyncio.wait_for(self._wait_servable(), timeout=timeout)
            except TimeoutError:
                raise DatabaseStarting(
                    "The database is still being connected; try again shortly.",
                    retry_after=max(1, round(timeout)),
                ) from None
            if self.ready:
                assert self._database is not None
                return self._database
        raise DatabaseUnavailable(self._unavailable_reason(), retry_after=self._retry_after())

    # -- FaultMonitor: told by requests ----------------------------------------

    def connection_failed(self, failure: Failure) -> None:
        """A request could not use the primary, even on a fresh connection: confirm."""
        if not self.status.using_fallback:
            failure = for_source(
                failure,
                self.resolution.url,
                on_space=self.settings.on_space,
                source=self.resolution.source,
            )
        self.status.last_failure = failure
        logger.warning("A database request failed: %s", failure.describe())
        self._probe_soon()

    def statement_timed_out(self) -> None:
        """One request ran out of time: is the server still answering at all?"""
        self._probe_soon()

    async def handed_over(self, database: Database) -> Database | None:
        """A SQLite statement failed: if `database` is a fallback whose tasks were moved
        into the primary (by this worker or another), switch and return what serves now."""
        url = self.primary_url
        if url is None or database.engine.url.get_backend_name() != "sqlite":
            return None
        from src.database.promotion import handed_over  # only on a fallback's failure

        try:
            moved = await asyncio.to_thread(handed_over, database.engine, url)
        except (sqlite3.Error, SQLAlchemyError) as error:
            logger.warning("Could not tell whether the fallback was handed over: %s", error)
            raise DatabaseBusy("The database is busy; try again.", retry_after=1) from None
        if not moved:
            return None
        if database is self._database:
            self.switchover.note_handed_over()
        return await self.acquire()

    # -- start-up ----------------------------------------------------------

    async def _decide(self) -> None:
        try:
            if self.resolution.ok:
                await self._start_primary()
            else:
                self._explain_unusable_url()
                await self.fallback.start_if_allowed(primary_configured=False)
        except Exception:
            logger.exception("Database start-up failed unexpectedly")
            self.status.transition(
                ConnectionState.CONNECTION_ERROR, "start-up failed unexpectedly; see the log"
            )
        finally:
            self._decided.set()

    def _explain_unusable_url(self) -> None:
        source = self.resolution.source
        if not self.resolution.present:
            self.status.fallback_reason = f"{source} is not set."
        else:
            errors = "; ".join(self.resolution.errors) or "it is not a usable database URL"
            self.status.fallback_reason = f"{source} is invalid: {errors}"
        logger.warning("%s", self.status.fallback_reason)

    def new_primary_engine(self) -> Engine:
        url = self.resolution.url
        assert url is not None
        return create_database_engine(
            url, self.settings, mysql_ssl_mode=self.resolution.mysql_ssl_mode
        )

    async def _start_primary(self) -> None:
        self.status.transition(ConnectionState.CONNECTING_PRIMARY, "trying the primary database")
        engine = self.new_primary_engine()
        outcome = await self.policy.with_retries(engine)
        if isinstance(outcome, Ready):
            await self.switchover.merge_leftovers(engine)
            self.serve(engine, primary=True, outcome=outcome)
            return
        await asyncio.to_thread(engine.dispose)
        if isinstance(outcome, Unusable):
            self._refuse_primary(outcome.failure)
            self.spawn(self._retry_primary(slow=True))
            return
        failure = outcome.failure
        if self.settings.database_fallback == "auto" and await asyncio.to_thread(
            self.primary_in_use.elsewhere
        ):
            # Not a second store beside the one the other workers serve: wait for it too.
            self.status.transition(
                ConnectionState.PRIMARY_UNAVAILABLE,
                "Another worker of this server serves the primary database, which this one "
                f"cannot reach yet ({failure.describe()}); it waits for it rather than use "
                "SQLite.",
            )
            self.spawn(self._retry_primary(slow=False))
            return
        if self.settings.database_fallback == "auto":
            self.status.fallback_reason = (
                f"The primary database could not be used ({failure.describe()})."
            )
            logger.warning("Falling back to SQLite: %s", self.status.fallback_reason)
            await self.fallback.start_if_allowed(primary_configured=True)
            # Refused too (a database not created yet, a role not granted yet): the
            # operator can fix it on the server, and the fallback must not outlive that.
            self.spawn(self.switchover.watch_primary(refused=isinstance(outcome, Refused)))
            return
        # The policy keeps us on the primary: retry in the background, fail fast meanwhile.
        self.status.transition(ConnectionState.PRIMARY_UNAVAILABLE, failure.describe())
        self.spawn(self._retry_primary(slow=isinstance(outcome, Refused)))

    def _refuse_primary(self, failure: Failure) -> None:
        """Reachable but unusable: an error the operator must see; nothing goes elsewhere."""
        self.status.last_failure = failure
        self.status.fallback_reason = None
        self.status.transition(
            ConnectionState.CONNECTION_ERROR,
            f"The primary database answered but cannot be used: {failure.message}",
        )
        logger.error("Primary database cannot be used: %s", failure.describe())

    async def _retry_primary(self, *, slow: bool) -> None:
        """Until the primary is usable (on the fallback, src.database.switchover does it)."""
        delay = 5.0 if slow else self.settings.database_retry_delay_ms / 1000
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0 if slow else _BACKGROUND_RETRY_MAX)
            engine = self.new_primary_engine()
            outcome = await self.policy.attempt(engine)
            if isinstance(outcome, Ready):
                await self.switchover.merge_leftovers(engine)
                self.serve(engine, primary=True, outcome=outcome)
                return
            await asyncio.to_thread(engine.dispose)
            if isinstance(outcome, Unusable):
                self._refuse_primary(outcome.failure)

    def serve(self, engine: Engine, *, primary: bool, outcome: Ready) -> None:
        """Start answering data requests from `engine`."""
        inline = (
            InlineSqlite(engine, checkpoint=not self.fallback.replicating)
            if _sqlite_file(engine)
            else None
        )
        loop_engine = None
        if engine.url.get_backend_name() == "postgresql":
            # Imported here: SQLAlchemy's asyncio layer is start-up time SQLite never needs.
            from src.database.async_engine import create_async_postgresql_engine

            loop_engine = create_async_postgresql_engine(engine.url, self.settings)
            # Requests use the loop's pool; the sync one (start-up, transfers) need not
            # keep its connections open meanwhile.
            engine.pool.dispose()
        self._database = Database(
            engine, self, self.settings.database_statement_timeout, inline, loop_engine
        )
        if primary:
            self.primary_in_use.hold()
            self.status.using_fallback = False
            self._probe_engine = self._probe_engine or create_database_engine(
                engine.url, self.settings, mysql_ssl_mode=self.resolution.mysql_ssl_mode, probe=True
            )
        state = ConnectionState.PRIMARY_CONNECTED if primary else ConnectionState.FALLBACK_CONNECTED
        where = self.describe_engine(engine)
        self.status.transition(state, f"using {where}")
        logger.info(
            "Database ready: %s (migrated to %s in %.0f ms)",
            where,
            outcome.revision,
            outcome.milliseconds,
        )

    async def stop_serving(self) -> Database | None:
        """No more units of work on the current database; returns it (its engine still
        open, its loop connections closed)."""
        database, self._database = self._database, None
        if database is not None:
            await database.close()
        return database

    # -- run time ----------------------------------------------------------

    def _probe_soon(self) -> None:
        if self.status.state is not ConnectionState.PRIMARY_CONNECTED or self._probing:
            return
        if time.monotonic() - self._probed_at < _PROBE_INTERVAL:
            return
        self._probing = True
        self.spawn(self._confirm_outage())

    async def _confirm_outage(self) -> None:
        try:
            assert self._probe_engine is not None
            failure = await self.policy.connect(self._probe_engine)
            self._probed_at = time.monotonic()
            if failure is None:
                logger.info("The primary database answers a fresh connection: no outage.")
                return
            if self.status.state is not ConnectionState.PRIMARY_CONNECTED:
                return
            self.status.transition(ConnectionState.PRIMARY_UNAVAILABLE, failure.describe())
            logger.error("Primary database unavailable: %s", failure.describe())
            if self._database is not None:
                # Its pooled connections are dead; new ones are made after recovery.
                await asyncio.to_thread(self._database.engine.pool.dispose)
                if self._database.loop_engine is not None:
                    await self._database.loop_engine.dispose()
            await self._recover()
        finally:
            self._probing = False

    async def _recover(self) -> None:
        delay = 0.25
        assert self._probe_engine is not None
        while self.status.state is ConnectionState.PRIMARY_UNAVAILABLE:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECOVERY_DELAY_MAX)
            if await self.policy.connect(self._probe_engine) is None:
                self.status.transition(ConnectionState.PRIMARY_CONNECTED, "primary answered again")
                logger.info("Primary database is back")

    # -- helpers -----------------------------------------------------------

    async def _wait_servable(self) -> None:
        await self._decided.wait()
        while self.switchover.switching:
            await asyncio.sleep(0.02)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def describe_engine(self, engine: Engine) -> str:
        backend = engine.url.get_backend_name()
        if backend == "sqlite":
            location = self.status.sqlite
            if location is not None and location.path is None:
                return "SQLite in memory"
            return f"SQLite at {engine.url.database}"
        return f"{backend} at {describe_server(engine.url)}"

    def _unavailable_reason(self) -> str:
        failure = self.status.last_failure
        if self.status.state is ConnectionState.PRIMARY_UNAVAILABLE:
            detail = f" ({failure.kind.value})" if failure else ""
            return f"The database is unavailable{detail}; retrying in the background."
        return "No database is available; see /config/database for the reason."

    def _retry_after(self) -> int:
        return 5 if self.status.state is ConnectionState.PRIMARY_UNAVAILABLE else 30

    def _close_engine(self, engine: Engine) -> None:
        try:
            checkpoint_sqlite(engine, truncate=not self.fallback.replicating)
        except Exception:
            logger.warning("SQLite checkpoint at shutdown failed", exc_info=True)
        engine.dispose()


def _sqlite_file(engine: Engine) -> bool:
    """A SQLite file (not the shared-cache memory database, which takes one connection)."""
    url = engine.url
    return (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and url.query.get("mode") != "memory"
    )
