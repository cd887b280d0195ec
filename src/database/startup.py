"""The start-up policy: one attempt at a database, and what its outcome allows.

An attempt connects (bounded by DATABASE_CONNECT_TIMEOUT), then migrates (bounded too).
Its outcome is one of four, and only two of them may ever lead to the SQLite fallback:

* `Ready` — connected and migrated;
* `Unreachable` — nobody answered (refused, timed out, name unknown): the fallback's
  reason under `DATABASE_FALLBACK=auto`, and worth trying again;
* `Refused` — a server answered and said the URL cannot work (wrong password, no such
  database, TLS, a pooler that does not know the user): the value is unusable, as an
  invalid URL is; retrying will not help until the configuration changes;
* `Unusable` — a server answered, but its schema cannot be migrated (or migrating failed
  otherwise): never a reason to write the user's data anywhere else.

The manager decides what to do with each, once per start; this module holds no state
beyond the status it records attempts in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from src.config.settings import Settings
from src.database.error_codes import Code, code_of
from src.database.failures import Failure, FailureKind, classify, sanitize
from src.database.probe import call_with_deadline, check_connection
from src.database.schema import SchemaConflict
from src.database.state import DatabaseStatus

logger = logging.getLogger(__name__)

MIGRATION_TIMEOUT_SECONDS = 120.0
_CONNECTIVITY = frozenset(
    {Code.CANNOT_CONNECT, Code.TERMINATED, Code.CONNECTION_LOST, Code.TIMEOUT}
)


@dataclass(frozen=True)
class Ready:
    revision: str | None
    milliseconds: float


@dataclass(frozen=True)
class Unreachable:
    failure: Failure


@dataclass(frozen=True)
class Refused:
    failure: Failure


@dataclass(frozen=True)
class Unusable:
    failure: Failure


Outcome = Ready | Unreachable | Refused | Unusable


class StartupPolicy:
    def __init__(
        self,
        settings: Settings,
        status: DatabaseStatus,
        migrate: Callable[[Engine], str | None],
    ) -> None:
        self.settings = settings
        self.status = status
        self._migrate = migrate

    @property
    def attempts(self) -> int:
        """Attempts at start-up: the first, then DATABASE_STARTUP_RETRIES retries."""
        return 1 + self.settings.database_startup_retries

    def delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based): doubling, at most 5 s."""
        return float(min(self.settings.database_retry_delay_ms / 1000 * 2 ** (attempt - 1), 5.0))

    async def attempt(self, engine: Engine) -> Outcome:
        """Connect, then migrate; never raises."""
        failure = await self.connect(engine)
        if failure is not None:
            return Unreachable(failure) if failure.kind.unreachable else Refused(failure)
        return await self.migrate(engine)

    async def with_retries(self, engine: Engine) -> Outcome:
        """`attempt` until it is not `Unreachable`, or the start-up retries are used up."""
        outcome: Outcome = Unreachable(Failure(FailureKind.OTHER, "not attempted"))
        for number in range(1, self.attempts + 1):
            outcome = await self.attempt(engine)
            if isinstance(outcome, Refused):
                logger.error(
                    "The primary database refused the connection (not retried): %s",
                    outcome.failure.describe(),
                )
            if not isinstance(outcome, Unreachable):
                return outcome
            logger.warning(
                "Primary database attempt %d/%d failed: %s",
                number,
                self.attempts,
                outcome.failure.describe(),
            )
            if number < self.attempts:
                await asyncio.sleep(self.delay(number))
        return outcome

    def classify(self, exc: BaseException, engine: Engine) -> Failure:
        """What went wrong, its hint naming where the primary URL came from (DATABASE_URL
        or the PG* variables)."""
        _, source = self.settings.primary_url_input
        return classify(exc, engine.url, on_space=self.settings.on_space, source=source)

    async def connect(self, engine: Engine) -> Failure | None:
        timeout = self.settings.database_connect_timeout + 1.0
        try:
            await asyncio.to_thread(
                call_with_deadline, lambda: check_connection(engine), timeout, name="db-connect"
            )
        except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
            failure = self.classify(exc, engine)
            self.status.attempted(failure)
            return failure
        self.status.attempted(None)
        return None

    async def migrate(self, engine: Engine) -> Outcome:
        started = time.monotonic()
        try:
            revision = await asyncio.to_thread(
                call_with_deadline,
                lambda: self._migrate(engine),
                MIGRATION_TIMEOUT_SECONDS,
                name="db-migrate",
            )
        except SchemaConflict as conflict:
            failure = Failure(FailureKind.SCHEMA, conflict.message)
            self.status.last_failure = failure
            return Unusable(failure)
        except Exception as exc:
            classified = self.classify(exc, engine)
            if code_of(exc) in _CONNECTIVITY or isinstance(exc, TimeoutError):
                # The server went away mid-migration: as if it had not answered.
                failure = Failure(
                    classified.kind if classified.kind.unreachable else FailureKind.UNREACHABLE,
                    f"lost during migration: {classified.message}",
                    classified.hint,
                )
                self.status.last_failure = failure
                return Unreachable(failure)
            logger.error("Migrations failed", exc_info=exc)
            failure = Failure(
                FailureKind.SCHEMA if code_of(exc) is Code.SCHEMA else FailureKind.OTHER,
                f"migrating the database failed: {sanitize(str(exc), engine.url)}",
                "the database answered but its schema could not be brought up to date; "
                "see the log and fix the database (permissions, tables): the app tries it again "
                "by itself, at most a minute apart (no restart needed).",
            )
            self.status.last_failure = failure
            return Unusable(failure)
        self.status.migrated_revision = revision
        return Ready(revision, (time.monotonic() - started) * 1000)
