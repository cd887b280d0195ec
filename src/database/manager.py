"""Which database the app uses, and its state over the life of the process.

Start-up (in the background, so liveness never waits): resolve the URL, try the primary
with bounded retries, fall back to SQLite when the policy allows, migrate. At run time:
a primary outage makes data requests fail fast with 503 until a background probe sees
it again. The app never switches to SQLite mid-run: that would split the data in two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import URL, Engine

from src.config.settings import Settings
from src.core.redaction import redactor
from src.database.engine import checkpoint_sqlite, create_database_engine
from src.database.failures import Failure, FailureKind, classify
from src.database.migrations import upgrade_to_head
from src.database.probe import call_with_deadline, check_connection
from src.database.resolver import Resolution, resolve_database_url
from src.database.sqlite_locator import locate_for
from src.database.state import (
    CONNECTED,
    DECIDING,
    ConnectionState,
    DatabaseNotReady,
    DatabaseStarting,
    DatabaseStatus,
)

logger = logging.getLogger(__name__)

MIGRATION_TIMEOUT_SECONDS = 120.0
_RECOVERY_DELAY_MAX = 5.0
_BACKGROUND_RETRY_MAX = 30.0


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
        self._migrate = migrate
        self._status = DatabaseStatus()
        self._engine: Engine | None = None
        self._decided = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovering = False

    # -- public surface ----------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._status.state

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def status(self) -> DatabaseStatus:
        return self._status

    @property
    def ready(self) -> bool:
        return self._status.state in CONNECTED and self._engine is not None

    @property
    def primary_url(self) -> URL | None:
        return self.resolution.url if self.resolution.ok else None

    async def start(self) -> None:
        """Begin deciding in the background; returns at once."""
        self._spawn(self._decide())

    async def wait_decided(self) -> None:
        """Until start-up has chosen a database (or given up)."""
        await self._decided.wait()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(self._close_engine, engine)
        self._set_state(ConnectionState.DISCONNECTED, "shut down")

    async def acquire(self) -> Engine:
        """The engine for a data request, or a `DatabaseNotReady` saying why not."""
        if self.ready:
            assert self._engine is not None
            return self._engine
        if self._status.state in DECIDING:
            try:
                await asyncio.wait_for(
                    self._decided.wait(), timeout=self.settings.database_connect_timeout
                )
            except TimeoutError:
                raise DatabaseStarting(
                    "The database is still being connected; try again shortly.",
                    retry_after=max(1, round(self.settings.database_connect_timeout)),
                ) from None
            if self.ready:
                assert self._engine is not None
                return self._engine
        raise DatabaseNotReady(self._unavailable_reason(), retry_after=self._retry_after())

    def report_failure(self, exc: BaseException) -> None:
        """A request hit a connectivity error: stop using the primary until it answers."""
        if self._status.state is not ConnectionState.PRIMARY_CONNECTED:
            return
        failure = classify(exc, self.primary_url, on_space=self.settings.on_space)
        self._status.last_failure = failure
        self._set_state(ConnectionState.PRIMARY_UNAVAILABLE, failure.describe())
        logger.error("Primary database unavailable: %s", failure.describe())
        if self._engine is not None:
            # Connections in the pool are dead; new ones are made after recovery.
            self._engine.pool.dispose()
        self._spawn(self._recover())

    # -- start-up ----------------------------------------------------------

    async def _decide(self) -> None:
        try:
            if self.resolution.ok:
                if await self._start_primary():
                    return
            else:
                self._explain_unusable_url()
            await self._start_fallback_if_allowed()
        except Exception as exc:
            failure = classify(exc, self.primary_url)
            self._status.last_failure = failure
            logger.exception("Database start-up failed unexpectedly")
            self._set_state(ConnectionState.CONNECTION_ERROR, failure.describe())
        finally:
            self._decided.set()

    def _explain_unusable_url(self) -> None:
        source = self.resolution.source
        if not self.resolution.present:
            self._status.fallback_reason = f"{source} is not set."
        else:
            errors = "; ".join(self.resolution.errors) or "it is not a usable database URL"
            self._status.fallback_reason = f"{source} is invalid: {errors}"
        logger.warning("%s", self._status.fallback_reason)

    async def _start_primary(self) -> bool:
        url = self.resolution.url
        assert url is not None
        self._set_state(ConnectionState.CONNECTING_PRIMARY, "trying the primary database")
        engine = create_database_engine(
            url, self.settings, mysql_ssl_mode=self.resolution.mysql_ssl_mode
        )
        attempts = max(1, self.settings.database_startup_retries)
        delay = self.settings.database_retry_delay_ms / 1000
        for attempt in range(1, attempts + 1):
            failure = await self._attempt(engine, url)
            if failure is None:
                return await self._adopt(engine, primary=True)
            logger.warning(
                "Primary database attempt %d/%d failed: %s", attempt, attempts, failure.describe()
            )
            if not failure.kind.transient or attempt == attempts:
                break
            await asyncio.sleep(min(delay * 2 ** (attempt - 1), 5.0))

        failure = self._status.last_failure
        assert failure is not None
        if self.settings.database_fallback == "auto":
            self._status.fallback_reason = (
                f"The primary database could not be used ({failure.describe()})."
            )
            await asyncio.to_thread(engine.dispose)
            return False
        # Policy keeps us on the primary: keep trying in the background, fail fast meanwhile.
        self._set_state(ConnectionState.PRIMARY_UNAVAILABLE, failure.describe())
        self._engine = None
        self._spawn(self._retry_primary_in_background(engine, url))
        return True

    async def _retry_primary_in_background(self, engine: Engine, url: URL) -> None:
        delay = self.settings.database_retry_delay_ms / 1000
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKGROUND_RETRY_MAX)
            if await self._attempt(engine, url) is None and await self._adopt(engine, primary=True):
                return

    async def _start_fallback_if_allowed(self) -> None:
        policy = self.settings.database_fallback
        if policy == "never" or (policy == "invalid-only" and self.resolution.ok):
            reason = self._status.fallback_reason or "The primary database could not be used."
            self._status.fallback_reason = None
            self._set_state(
                ConnectionState.CONNECTION_ERROR,
                f"{reason} DATABASE_FALLBACK={policy}: SQLite is not used.",
            )
            logger.error("No database: %s", self._status.reason)
            return
        self._set_state(ConnectionState.CONNECTING_FALLBACK, self._status.fallback_reason or "")
        location = await asyncio.to_thread(locate_for, self.settings)
        self._status.sqlite = location
        self._status.using_fallback = True
        if not location.persistent:
            logger.warning("SQLite is not persistent: %s", location.persistence_note)
        engine = create_database_engine(location.url, self.settings)
        failure = await self._attempt(engine, location.url)
        if failure is None and await self._adopt(engine, primary=False):
            return
        self._set_state(
            ConnectionState.CONNECTION_ERROR,
            f"SQLite at {location.path or 'memory'} failed: "
            f"{self._status.last_failure.describe() if self._status.last_failure else 'unknown'}",
        )

    async def _attempt(self, engine: Engine, url: URL) -> Failure | None:
        self._status.attempts += 1
        self._status.last_attempt_at = datetime.now(UTC)
        timeout = self.settings.database_connect_timeout + 1.0
        try:
            await asyncio.to_thread(
                call_with_deadline, lambda: check_connection(engine), timeout, name="db-connect"
            )
        except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
            failure = classify(exc, url, on_space=self.settings.on_space)
            if isinstance(exc, TimeoutError):
                failure = Failure(FailureKind.TIMEOUT, failure.message, failure.hint)
            self._status.last_failure = failure
            return failure
        return None

    async def _adopt(self, engine: Engine, *, primary: bool) -> bool:
        """Migrate, then start serving from `engine`."""
        started = time.monotonic()
        try:
            revision = await asyncio.to_thread(
                call_with_deadline,
                lambda: self._migrate(engine),
                MIGRATION_TIMEOUT_SECONDS,
                name="db-migrate",
            )
        except Exception as exc:  # noqa: BLE001 - reported; start-up continues without it
            failure = classify(exc, engine.url, on_space=self.settings.on_space)
            self._status.last_failure = Failure(
                failure.kind, f"migration failed: {failure.message}", failure.hint
            )
            logger.error("Migrations failed: %s", self._status.last_failure.describe())
            if primary and self.settings.database_fallback == "auto":
                self._status.fallback_reason = (
                    f"The primary database could not be migrated ({failure.describe()})."
                )
            return False
        self._status.migrated_revision = revision
        self._engine = engine
        state = ConnectionState.PRIMARY_CONNECTED if primary else ConnectionState.FALLBACK_CONNECTED
        where = self._describe_engine(engine)
        self._set_state(state, f"using {where}")
        logger.info(
            "Database ready: %s (migrated to %s in %.0f ms)",
            where,
            revision,
            (time.monotonic() - started) * 1000,
        )
        return True

    # -- run time ----------------------------------------------------------

    async def _recover(self) -> None:
        if self._recovering or self._engine is None:
            return
        self._recovering = True
        engine, url = self._engine, self._engine.url
        delay = 0.25
        try:
            while self._status.state is ConnectionState.PRIMARY_UNAVAILABLE:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECOVERY_DELAY_MAX)
                if await self._attempt(engine, url) is None:
                    self._set_state(ConnectionState.PRIMARY_CONNECTED, "primary answered again")
                    logger.info("Primary database is back")
        finally:
            self._recovering = False

    # -- helpers -----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_state(self, state: ConnectionState, why: str) -> None:
        if state is not self._status.state:
            self._status.history.append(f"{datetime.now(UTC).isoformat()} {state.value}: {why}")
            del self._status.history[:-20]
        self._status.state = state
        self._status.reason = why

    def _describe_engine(self, engine: Engine) -> str:
        backend = engine.url.get_backend_name()
        if backend == "sqlite":
            location = self._status.sqlite
            if location is not None and location.path is None:
                return "SQLite in memory"
            return f"SQLite at {engine.url.database}"
        return f"{backend} at {engine.url.host or 'local socket'}"

    def _unavailable_reason(self) -> str:
        failure = self._status.last_failure
        if self._status.state is ConnectionState.PRIMARY_UNAVAILABLE:
            detail = f" ({failure.kind.value})" if failure else ""
            return f"The database is unavailable{detail}; retrying in the background."
        return "No database is available; see /config/database for the reason."

    def _retry_after(self) -> int:
        return 5 if self._status.state is ConnectionState.PRIMARY_UNAVAILABLE else 30

    @staticmethod
    def _close_engine(engine: Engine) -> None:
        try:
            checkpoint_sqlite(engine)
        except Exception:
            logger.warning("SQLite checkpoint at shutdown failed", exc_info=True)
        engine.dispose()
