"""`python -m src doctor`: explain the database configuration without starting the server.

Exit code 0 when the primary database will be used, 1 when it will not (fallback to
SQLite, or no database at all). `--connect` also connects, and reads (never writes) the
schema: a database whose tables this version cannot migrate is reported, exit code 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from src.config.settings import Settings, load_settings
from src.core.redaction import redactor
from src.database.engine import create_database_engine
from src.database.failures import Failure, FailureKind, classify
from src.database.migrations import head_revision, known_revisions
from src.database.persistence import primary_persistence
from src.database.probe import call_with_deadline, check_connection
from src.database.resolver import Resolution, resolve_database_url
from src.database.schema import SchemaState, inspect_schema, refuse
from src.database.sqlite_locator import locate_for
from src.replication import doctor_check, replica_config


def diagnose(settings: Settings, *, connect: bool) -> dict[str, Any]:
    raw, source = settings.primary_url_input
    resolution = resolve_database_url(raw, source=source)
    redactor.add(*resolution.secrets(), *settings.secret_values)
    redactor.add_username(*resolution.usernames())
    policy = settings.database_fallback
    failure: Failure | None = None
    connect_ms: float | None = None
    schema: SchemaState | None = None
    if connect and resolution.ok:
        failure, connect_ms, schema = _try_connect(resolution, settings)

    primary_usable = resolution.ok and failure is None
    if primary_usable:
        fallback_reason = None
    elif not resolution.present:
        fallback_reason = f"{source} is not set."
    elif not resolution.ok:
        fallback_reason = f"{source} is invalid: " + "; ".join(resolution.errors)
    else:
        assert failure is not None
        fallback_reason = f"The primary database could not be used ({failure.describe()})."
    # A primary that answers but cannot be migrated is never replaced by SQLite.
    schema_refused = failure is not None and failure.kind is FailureKind.SCHEMA
    would_fall_back = (
        not primary_usable
        and not schema_refused
        and (policy == "auto" or (policy == "invalid-only" and not resolution.ok))
    )
    location = locate_for(settings)
    # The persistence facts describe the database that will be used, never a SQLite file
    # the app will not touch; `sqlite_role` says what the SQLite file is for.
    persistent: bool | None = None
    persistence_note: str | None = None
    sqlite_role: str | None = None
    if primary_usable:
        assert resolution.url is not None
        persistent, persistence_note = primary_persistence(
            resolution.url, source, on_space=settings.on_space
        )
        if policy == "auto":
            sqlite_role = "fallback"  # used only if the primary cannot be used at start
    elif would_fall_back:
        persistent, persistence_note = location.persistent, location.persistence_note
        sqlite_role = "database"
        replica = replica_config(settings)
        if replica is not None and replica.valid and location.path is not None:
            # The disk may be wiped: the replica brings the file back at start.
            persistent = True
            persistence_note = (
                f"Replicated to {replica.masked_url} every {replica.sync_interval:g} s and "
                "restored from it when the file is missing at start, so tasks survive "
                "restarts; a crash can lose the last seconds of writes."
            )
    return {
        "source": source,
        "backend": resolution.backend,
        "driver": resolution.url.drivername if resolution.url is not None else None,
        "url": resolution.masked_url(),
        "repairs": list(resolution.repairs),
        "errors": list(resolution.errors),
        "fallback_policy": policy,
        "would_fall_back": would_fall_back,
        "fallback_reason": fallback_reason,
        "primary_will_be_used": primary_usable,
        "sqlite_path": str(location.path) if location.path else ":memory:",
        "sqlite_role": sqlite_role,
        "sqlite_rejected": list(location.rejected),
        "persistent": persistent,
        "persistence_note": persistence_note,
        "connect": None
        if not connect
        else {
            "attempted": resolution.ok,
            "ok": resolution.ok and failure is None,
            "kind": failure.kind.value if failure else None,
            "error": failure.describe() if failure else None,
            "milliseconds": round(connect_ms) if connect_ms is not None else None,
            "schema": _describe_schema(schema),
        },
        "replication": _replication(settings, connect, location.path),
        "settings_warnings": list(settings.warnings),
    }


def _try_connect(
    resolution: Resolution, settings: Settings
) -> tuple[Failure | None, float, SchemaState | None]:
    """Connect, then read the schema; (failure, milliseconds to connect, schema)."""
    assert resolution.url is not None
    engine = create_database_engine(
        resolution.url, settings, mysql_ssl_mode=resolution.mysql_ssl_mode, probe=True
    )
    started = time.monotonic()
    timeout = settings.database_connect_timeout + 1.0
    try:
        call_with_deadline(lambda: check_connection(engine), timeout)
        elapsed = (time.monotonic() - started) * 1000
        schema = call_with_deadline(lambda: _read_schema(engine), timeout)
    except Exception as exc:  # noqa: BLE001 - reported to the operator, classified
        failure = classify(
            exc, resolution.url, on_space=settings.on_space, source=resolution.source
        )
        return failure, (time.monotonic() - started) * 1000, None
    finally:
        engine.dispose()
    conflict = refuse(schema, head_revision())
    if conflict is not None:
        return Failure(FailureKind.SCHEMA, conflict.message), elapsed, schema
    return None, elapsed, schema


def _read_schema(engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        return inspect_schema(connection, known_revisions())


def _describe_schema(schema: SchemaState | None) -> str | None:
    if schema is None:
        return None
    head = head_revision()
    return {
        "empty": f"no tables of this app yet: they will be created (revision {head})",
        "ours": f"at revision {schema.revision} (this version's head is {head})",
        "unknown_revision": f"at revision {schema.revision!r}, unknown to this version",
        "foreign_table": "a 'tasks' table of another layout: will not be touched",
    }[schema.kind]


def _replication(settings: Settings, connect: bool, path: Path | None) -> dict[str, Any] | None:
    """The replica as configured, and with --connect whether it can be read (never
    written)."""
    config = replica_config(settings)
    if config is None:
        return None
    result: dict[str, Any] = {
        "replica_url": config.masked_url,
        "errors": list(config.errors),
        "warnings": list(config.warnings),
        "sync_interval_seconds": config.sync_interval,
        "check": None,
    }
    if connect:
        result["check"] = doctor_check(config, timeout=10.0, db_path=path).as_dict()
    return result


def _render_replication(replication: dict[str, Any] | None) -> list[str]:
    if replication is None:
        return ["  replica:    none (SQLITE_REPLICA_URL is not set)"]
    lines = [
        f"  replica:    {replication['replica_url']} "
        f"(sync every {replication['sync_interval_seconds']:g} s)"
    ]
    lines.extend(f"    - error: {error}" for error in replication["errors"])
    lines.extend(f"    - warning: {warning}" for warning in replication["warnings"])
    check = replication["check"]
    if check is not None:
        outcome = {
            "ok": f"readable: {check.get('files')} file(s), {check.get('bytes')} bytes",
            "empty": "readable and empty: the first start will begin it",
        }.get(check["status"], f"UNREADABLE: {check.get('reason')}")
        lines.append(f"    check:    {outcome}")
    return lines


def _render_storage(report: dict[str, Any]) -> list[str]:
    """Where the tasks will be kept; the SQLite file's facts only when it is the database
    (or may become it, as the fallback)."""
    role = report["sqlite_role"]
    if role == "database":
        lines = [f"  sqlite:     {report['sqlite_path']}"]
        lines.append(f"              {report['persistence_note']}")
        lines.extend(f"    skipped: {item}" for item in report["sqlite_rejected"])
        return lines
    lines = []
    if report["persistence_note"]:
        kept = "" if report["persistent"] else "NOT persistent: "
        lines.append(f"  data:       {kept}{report['persistence_note']}")
    if role == "fallback":
        lines.append(
            f"  fallback:   SQLite at {report['sqlite_path']}, only if the primary cannot be "
            f"used at start (DATABASE_FALLBACK={report['fallback_policy']})"
        )
        lines.extend(f"    skipped: {item}" for item in report["sqlite_rejected"])
    else:
        lines.append(f"  fallback:   none ({_no_fallback(report)})")
    return lines


def _no_fallback(report: dict[str, Any]) -> str:
    connect = report["connect"]
    if connect is not None and connect["kind"] == FailureKind.SCHEMA.value:
        return "SQLite never stands in for a primary that answered"
    if report["fallback_policy"] == "never":
        return "DATABASE_FALLBACK=never"
    return "DATABASE_FALLBACK=invalid-only: SQLite only for a missing or invalid URL"


def _render_text(report: dict[str, Any]) -> str:
    lines = [f"Database configuration ({report['source']})"]
    lines.append(f"  backend:    {report['backend'] or '—'}  (driver {report['driver'] or '—'})")
    lines.append(f"  url:        {report['url'] or '—'}")
    for title, items in (("repairs", report["repairs"]), ("errors", report["errors"])):
        lines.append(f"  {title + ':':<11} {'none' if not items else ''}".rstrip())
        lines.extend(f"    - {item}" for item in items)
    lines.append(f"  policy:     DATABASE_FALLBACK={report['fallback_policy']}")
    connect = report["connect"]
    if connect is not None and connect["attempted"]:
        outcome = (
            f"ok in {connect['milliseconds']} ms"
            if connect["ok"]
            else f"FAILED: {connect['error']}"
        )
        lines.append(f"  connect:    {outcome}")
        if connect["schema"]:
            lines.append(f"  schema:     {connect['schema']}")
    if report["primary_will_be_used"]:
        verdict = "the primary database will be used"
        if connect is None:
            verdict += " (if it is reachable: add --connect to check)"
    elif report["would_fall_back"]:
        verdict = f"SQLite will be used — {report['fallback_reason']}"
    else:
        verdict = f"NO database will be used — {report['fallback_reason']}"
    lines.append(f"  verdict:    {verdict}")
    lines.extend(_render_storage(report))
    lines.extend(_render_replication(report["replication"]))
    if report["settings_warnings"]:
        lines.append("Settings warnings:")
        lines.extend(f"  - {warning}" for warning in report["settings_warnings"])
    return "\n".join(lines)


def doctor(*, as_json: bool, connect: bool, reveal: bool) -> int:
    settings = load_settings()
    report = diagnose(settings, connect=connect)
    if reveal:
        if sys.stdout.isatty():
            raw, source = settings.primary_url_input
            url = resolve_database_url(raw, source=source).url
            if url is not None:
                redactor.clear()  # the operator asked, on their own terminal
                report["url"] = url.render_as_string(hide_password=False)
        else:
            print("--reveal-password ignored: output is not a terminal.", file=sys.stderr)
    print(json.dumps(report, indent=2) if as_json else _render_text(report))
    return 0 if report["primary_will_be_used"] else 1
