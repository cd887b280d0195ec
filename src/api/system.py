"""System endpoints (no auth): liveness, readiness and what database is in use and why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from src.api.dependencies import ManagerDep
from src.api.disclosure import HIDDEN, Disclosure
from src.database.manager import DatabaseManager
from src.database.persistence import primary_persistence
from src.database.sqlite_locator import SqliteLocation
from src.database.state import ConnectionState
from src.http.errors import ErrorResponse, error_body

router = APIRouter(tags=["system"])


def database_type(manager: DatabaseManager) -> str | None:
    engine = manager.engine
    if engine is None:
        return None
    backend = engine.url.get_backend_name()
    return "mysql" if backend == "mariadb" else backend


def health_status(manager: DatabaseManager) -> str:
    state = manager.state
    if state is ConnectionState.PRIMARY_CONNECTED:
        return "healthy"
    # SQLite is the intended database when nothing else is configured.
    if state is ConnectionState.FALLBACK_CONNECTED and not manager.resolution.present:
        return "healthy"
    return "degraded"


def database_report(manager: DatabaseManager) -> dict[str, Any]:
    """The facts `/config/database` serves, as much of them as STATUS_DETAIL allows."""
    status = manager.status
    resolution = manager.resolution
    engine = manager.engine
    sqlite = status.sqlite
    failure = status.last_failure
    shown = Disclosure(manager.settings, manager)
    replication = _replication(manager, shown)
    persistent: bool | None
    persistence_note = sqlite.persistence_note if sqlite else None
    if status.using_fallback and replication is not None and replication["state"] == "replicating":
        persistent = True  # the disk may be wiped: the replica restores it at start
        persistence_note = replication_note(replication)
    elif status.using_fallback and sqlite is not None:
        persistent = sqlite.persistent
    elif resolution.ok and resolution.url is not None:
        # The primary is (or will be) the database: its facts, not the SQLite file's.
        persistent, persistence_note = primary_persistence(
            resolution.url, resolution.source, on_space=manager.settings.on_space
        )
    else:
        persistent, persistence_note = None, None
    return {
        "status_detail": shown.mode,
        "primary_url_present": resolution.present,
        "primary_url": shown.text(resolution.masked_url()),
        "primary_source": resolution.source,
        "current_driver": engine.url.drivername if engine is not None else None,
        "database_type": database_type(manager),
        "fallback_enabled": manager.settings.database_fallback != "never",
        "fallback_policy": manager.settings.database_fallback,
        "fallback_active": status.using_fallback,
        "fallback_reason": shown.text(status.fallback_reason),
        "connection_state": status.state.value,
        "state_reason": shown.text(status.reason),
        "ready": manager.ready,
        "validation_errors": list(resolution.errors),
        "repairs": list(resolution.repairs),
        "sqlite_path": shown.text(_sqlite_path(sqlite)),
        "sqlite_location": sqlite.source if sqlite else None,
        "sqlite_rejected": [] if shown.minimal or not sqlite else list(sqlite.rejected),
        "persistent": persistent,
        "persistence_note": shown.text(persistence_note),
        "replication": replication,
        "last_error": shown.text(failure.describe()) if failure else None,
        "last_error_kind": failure.kind.value if failure else None,
        "last_connection_attempt": (
            status.last_attempt_at.isoformat() if status.last_attempt_at else None
        ),
        "connection_attempts_count": status.attempts,
        "migrated_revision": status.migrated_revision,
        "promotion": status.promotion,
        "settings_warnings": list(manager.settings.warnings),
        "history": [] if shown.minimal else list(status.history),
    }


def _replication(manager: DatabaseManager, shown: Disclosure) -> dict[str, Any] | None:
    """The replica's status (`null` when none is configured)."""
    replication = manager.fallback.replica.status()
    if replication is None:
        return None
    if shown.minimal:
        scheme = str(replication.get("replica_url") or "").partition("://")[0]
        replication = {**replication, "replica_url": f"{scheme}://{HIDDEN}" if scheme else None}
        replication["last_error"] = shown.text(replication.get("last_error"))
    return replication


def replication_note(replication: dict[str, Any]) -> str:
    """ "Replicated to … (last sync N s ago)", for the persistence facts."""
    lag = replication.get("lag_seconds")
    when = "no sync yet" if lag is None else f"last sync {lag:.0f} s ago"
    return (
        f"Replicated to {replication.get('replica_url')} ({when}); restored from it at every start."
    )


def _sqlite_path(sqlite: SqliteLocation | None) -> str | None:
    if sqlite is None:
        return None
    return str(sqlite.path) if sqlite.path else ":memory:"


@router.get(
    "/health",
    summary="Liveness",
    responses={503: {"description": "CONNECTION_ERROR: no database can be used; see why."}},
)
async def health(manager: ManagerDep) -> JSONResponse:
    body = {
        "status": health_status(manager),
        "timestamp": datetime.now(UTC).isoformat(),
        "database_status": manager.state.value,
        "database_type": database_type(manager),
        "fallback_active": manager.status.using_fallback,
    }
    code = 503 if manager.state is ConnectionState.CONNECTION_ERROR else 200
    return JSONResponse(body, code)


@router.get(
    "/ready",
    summary="Readiness",
    responses={503: {"model": ErrorResponse, "description": "No database connected yet."}},
)
async def ready(manager: ManagerDep) -> JSONResponse:
    if manager.ready:
        return JSONResponse(
            {
                "ready": True,
                "database_status": manager.state.value,
                "database_type": database_type(manager),
                "migrated_revision": manager.status.migrated_revision,
            }
        )
    reason = Disclosure(manager.settings, manager).text(manager.status.reason)
    body = error_body(
        f"Not ready: {reason}",
        "NOT_READY",
        {"database_status": manager.state.value},
    )
    return JSONResponse(body, 503, headers={"Retry-After": "5"})


# HEAD answers like GET; registered apart so that OpenAPI lists each operation once.
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/ready", ready, methods=["HEAD"], include_in_schema=False)


@router.get("/config/database", summary="Which database is in use, and why")
async def config_database(manager: ManagerDep) -> dict[str, Any]:
    return database_report(manager)
