"""`python -m src migrate`, and the plain `alembic` command: migrate the configured database.

"Configured" means the primary when `DATABASE_URL` (or `PGHOST`) is set — never the
SQLite fallback in its place: a primary that cannot be reached, or whose schema cannot be
migrated, is a failure here (exit 1), whatever `DATABASE_FALLBACK` says. With no primary
configured, the SQLite database the app uses is the configured one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from src.config.settings import Settings, load_settings
from src.core.logging import configure_logging
from src.core.redaction import redactor
from src.database.engine import create_database_engine
from src.database.migrations import (
    Upgrade,
    check_schema,
    current_revision,
    migration_lock,
    upgrade,
)
from src.database.resolver import resolve_database_url
from src.database.sqlite_locator import locate_for
from src.database.startup import Ready, StartupPolicy
from src.database.state import DatabaseStatus


@dataclass(frozen=True)
class MigrationResult:
    ok: bool
    message: str


def migrate_configured(
    settings: Settings, migrate: Callable[[Engine], Upgrade] = upgrade
) -> MigrationResult:
    """Migrate the configured database (see the module docstring); never raises."""
    raw, source = settings.primary_url_input
    resolution = resolve_database_url(raw, source=source)
    redactor.add(*resolution.secrets())
    redactor.add_username(*resolution.usernames())
    if resolution.present and not resolution.ok:
        errors = "; ".join(resolution.errors)
        return MigrationResult(False, f"Not migrated: {source} is invalid: {errors}")
    if resolution.url is not None:
        url, what = resolution.url, "the primary database"
        engine = create_database_engine(url, settings, mysql_ssl_mode=resolution.mysql_ssl_mode)
    else:
        location = locate_for(settings)
        if location.path is None:
            return MigrationResult(
                False,
                f"Not migrated: there is no SQLite file to migrate ({location.persistence_note})",
            )
        url, what = location.url, f"the SQLite database {location.path}"
        engine = create_database_engine(url, settings)
    upgrades: list[Upgrade] = []

    def migrate_and_note(engine: Engine) -> str | None:
        done = migrate(engine)
        upgrades.append(done)
        return done.after

    policy = StartupPolicy(settings, DatabaseStatus(), migrate_and_note)
    try:
        outcome = asyncio.run(policy.with_retries(engine))
    finally:
        engine.dispose()
    if isinstance(outcome, Ready):
        return MigrationResult(True, _done(what, upgrades[-1]))
    return MigrationResult(
        False,
        f"Not migrated: {what} could not be used ({outcome.failure.describe()}). "
        "Nothing was migrated anywhere else.",
    )


def _done(what: str, done: Upgrade) -> str:
    if not done.changed:
        return (
            f"{what[0].upper()}{what[1:]} is already at the newest revision, {done.after}: "
            "nothing was changed."
        )
    before = "had no tables of this app" if done.before is None else f"was at {done.before}"
    return f"Migrated {what} to revision {done.after} (it {before})."


def migrate() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    result = migrate_configured(settings)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def migrate_with_app_rules(run_on: Callable[[Connection], None]) -> None:
    """Used by alembic/env.py when Alembic is run directly."""

    def via_alembic(engine: Engine) -> Upgrade:
        with engine.connect() as connection:
            with migration_lock(connection):
                check_schema(connection)
                before = current_revision(connection)
                run_on(connection)
                after = current_revision(connection)
            return Upgrade(before, after)

    result = migrate_configured(load_settings(), via_alembic)
    if not result.ok:
        raise SystemExit(result.message)
