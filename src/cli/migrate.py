"""`python -m src migrate`, and the plain `alembic` command: migrate the database the app
would use, chosen by the same start-up rules (resolver, retries, fallback policy)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy.engine import Connection, Engine

from src.config.settings import Settings, load_settings
from src.core.logging import configure_logging
from src.database.manager import DatabaseManager
from src.database.migrations import current_revision, migration_lock, upgrade_to_head
from src.database.state import CONNECTED, DatabaseStatus


def decide_and_migrate(
    settings: Settings, migrate: Callable[[Engine], str | None] = upgrade_to_head
) -> DatabaseStatus:
    """Run the app's start-up decision once (which migrates) and report its outcome."""

    async def run() -> DatabaseStatus:
        manager = DatabaseManager(settings, migrate=migrate)
        await manager.start()
        await manager.wait_decided()
        outcome = replace(manager.status, history=list(manager.status.history))
        await manager.stop()
        return outcome

    return asyncio.run(run())


def migrate() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    status = decide_and_migrate(settings)
    if status.state in CONNECTED:
        where = "the fallback SQLite database" if status.using_fallback else "the primary database"
        print(f"Migrated {where} to revision {status.migrated_revision}.")
        if status.fallback_reason:
            print(f"Fallback reason: {status.fallback_reason}")
        return 0
    print(f"Not migrated: {status.reason}", file=sys.stderr)
    return 1


def migrate_with_app_rules(run_on: Callable[[Connection], None]) -> None:
    """Used by alembic/env.py when Alembic is run directly."""

    def via_alembic(engine: Engine) -> str | None:
        with engine.connect() as connection:
            with migration_lock(connection):
                run_on(connection)
            return current_revision(connection)

    status = decide_and_migrate(load_settings(), via_alembic)
    if status.state not in CONNECTED:
        raise SystemExit(f"Not migrated: {status.reason}")
