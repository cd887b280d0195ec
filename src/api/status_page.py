"""`/`: what a visitor of the Space (or an operator) sees first.

HTML for browsers, the same facts as JSON for `Accept: application/json`. No external
assets and no script, so it renders inside the Space's iframe, offline and on a phone;
a Content-Security-Policy makes the browser refuse anything else. No database I/O: the
page only reads the manager's state, so it answers at once, also while the database is
still being decided. Nothing on it is a secret: URLs are masked, the auth facts are a
fixed set of fields, and free-text messages also pass through the log redactor.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from src.api.dependencies import ManagerDep
from src.api.disclosure import Disclosure
from src.api.system import database_report, health_status, replication_note
from src.config.settings import APP_NAME, APP_VERSION
from src.core.redaction import redactor
from src.database.manager import DatabaseManager
from src.database.state import DECIDING

router = APIRouter(tags=["system"])

AUTH_NOT_CONFIGURED = "not configured yet"
_AUTH_FIELDS = ("mode", "description", "secret_file")
_DATABASE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MySQL / MariaDB"}
_DECIDING = {state.value for state in DECIDING}
_DETAIL_NOTE = {
    "full": "full (set STATUS_DETAIL=minimal to hide host names, database names, file "
    "paths and history from visitors)",
    "minimal": "minimal: host names, database names and file paths are hidden "
    "(STATUS_DETAIL=minimal)",
}
_HEADERS = {
    "Cache-Control": "no-store",
    # Everything the page uses is inline; anything else would be a bug (or an injection).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    ),
}


def status_facts(request: Request, manager: DatabaseManager) -> dict[str, Any]:
    report = database_report(manager)
    return {
        "service": APP_NAME,
        "version": APP_VERSION,
        "status": health_status(manager),
        "ready": report["ready"],
        "database": {
            "type": report["database_type"],
            "state": report["connection_state"],
            "why": _redacted(_why(report)),
            "primary_url": report["primary_url"],  # masked by the resolver
            "fallback_active": report["fallback_active"],
            "sqlite_path": report["sqlite_path"],
            "persistent": report["persistent"],
            "persistence_note": report["persistence_note"],
            "repairs": _redacted(report["repairs"]),
            "validation_errors": _redacted(report["validation_errors"]),
            "last_error": _redacted(report["last_error"]),
            "promotion": report["promotion"],
            "detail": report["status_detail"],
            "replication": _replication_facts(report["replication"]),
        },
        "auth": _auth_facts(
            getattr(request.app.state, "auth_mode", None), Disclosure(manager.settings, manager)
        ),
        "links": {
            "docs": "/docs",
            "health": "/health",
            "ready": "/ready",
            "database": "/config/database",
        },
    }


def _why(report: dict[str, Any]) -> str:
    if report["fallback_active"] and report["fallback_reason"]:
        return str(report["fallback_reason"])
    if report["connection_state"] == "PRIMARY_CONNECTED":
        return f"{report['primary_source']} is set and the database answered."
    return str(report["state_reason"])


def _replication_facts(replication: dict[str, Any] | None) -> dict[str, Any] | None:
    if replication is None:
        return None
    state = replication.get("state")
    return {
        "state": state,
        "summary": replication_note(replication)
        if state == "replicating"
        else f"{state}: {_redacted(replication.get('last_error') or 'see /config/database')}",
        "failing": state in ("unreadable", "error", "invalid"),
    }


def _auth_facts(auth: Any, shown: Disclosure) -> dict[str, Any]:
    """Only the fields of the auth contract: whatever else sits there is never shown."""
    if not isinstance(auth, dict) or not auth.get("mode"):
        return {"mode": None, "description": AUTH_NOT_CONFIGURED, "secret_file": None}
    return {
        name: shown.text(_redacted(str(auth[name]))) if auth.get(name) else None
        for name in _AUTH_FIELDS
    }


def _redacted(value: Any) -> Any:
    """Free text (messages that may quote a driver) through the log redactor, as a second
    line of defence. Not the structured facts: a user named `postgres` would turn the
    database type `postgresql` into `***ql`."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


# HEAD too: a Space (or a load balancer) may probe with it; a 405 can leave a Space stuck
# in "Starting". Listed once in the OpenAPI document, under GET.
@router.head("/", include_in_schema=False, response_model=None)
@router.get(
    "/",
    summary="Status page",
    response_class=HTMLResponse,
    responses={
        200: {
            "description": "HTML for browsers; the same facts as JSON with "
            "`Accept: application/json`.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def status_page(request: Request, manager: ManagerDep) -> Response:
    facts = status_facts(request, manager)
    if _wants_json(request.headers.get("accept", "")):
        return JSONResponse(facts, headers={"Cache-Control": "no-store"})
    return HTMLResponse(render(facts), headers=_HEADERS)


def _wants_json(accept: str) -> bool:
    accept = accept.lower()
    return "application/json" in accept and "text/html" not in accept


# -- HTML ------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "—" if value in (None, "", []) else escape(str(value))


def _row(label: str, value: Any, *, code: bool = False) -> str:
    shown = _text(value)
    if code and value not in (None, ""):
        shown = f"<code>{shown}</code>"
    return f"<dt>{escape(label)}</dt><dd>{shown}</dd>"


def _list_row(label: str, items: list[str]) -> str:
    if not items:
        return ""
    entries = "".join(f"<li>{escape(item)}</li>" for item in items)
    return f"<dt>{escape(label)}</dt><dd><ul>{entries}</ul></dd>"


def _banners(facts: dict[str, Any]) -> str:
    db = facts["database"]
    banners = []
    if db["state"] in _DECIDING:
        banners.append(
            '<p class="note" role="status">The database is still being connected; '
            "reload in a moment.</p>"
        )
    elif not facts["ready"]:
        banners.append(
            '<p class="bad" role="alert"><strong>No database is available.</strong> '
            f"{_text(db['why'])} Task requests answer 503 until this is fixed.</p>"
        )
    replication = db["replication"]
    if replication is not None and replication["failing"]:
        banners.append(
            '<p class="bad" role="alert"><strong>The replica cannot be used.</strong> '
            f"{_text(replication['summary'])}</p>"
        )
    if db["persistent"] is False:
        banners.append(
            '<p class="warn" role="alert"><strong>Data will not survive a restart.</strong> '
            f"{_text(db['persistence_note'])}</p>"
        )
    return "\n".join(banners)


def render(facts: dict[str, Any]) -> str:
    db = facts["database"]
    auth = facts["auth"]
    database_name = _DATABASE_NAMES.get(db["type"] or "", db["type"]) or "none"
    persistent = {True: "yes", False: "no", None: "—"}[db["persistent"]]
    database_rows = "".join(
        [
            _row("In use", database_name),
            _row("Why", db["why"]),
            _row("State", db["state"], code=True),
            _row("Primary URL", db["primary_url"], code=True) if db["primary_url"] else "",
            _row("SQLite file", db["sqlite_path"], code=True) if db["sqlite_path"] else "",
            _row("Persistent", persistent),
            _row("Replica", db["replication"]["summary"]) if db["replication"] else "",
            _list_row("Repairs made", db["repairs"]),
            _list_row("URL problems", db["validation_errors"]),
            _row("Last error", db["last_error"]) if db["last_error"] else "",
            _row("Moved from the fallback", db["promotion"]) if db["promotion"] else "",
            _row("Detail shown", _DETAIL_NOTE[db["detail"]]),
        ]
    )
    status_class = "ok" if facts["status"] == "healthy" else "degraded"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<link rel="icon" href="data:,">
<title>{_text(facts["service"])} · {_text(facts["status"])}</title>
<style>
*{{box-sizing:border-box}}
body{{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
padding:.75rem;color:#1f2328;background:#f6f8fa}}
main{{max-width:46rem;margin:auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;
padding:1rem 1.25rem}}
h1{{font-size:1.35rem;margin:.2rem 0 .25rem}}
h1 small{{font-weight:400;color:#57606a}}
h2{{font-size:1.05rem;margin:1.25rem 0 .25rem}}
p{{margin:.5rem 0}}
.badge{{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85rem;
vertical-align:middle}}
.badge.ok{{background:#dafbe1;color:#116329}}
.badge.degraded{{background:#fff8c5;color:#7d4e00}}
dl{{display:grid;grid-template-columns:minmax(7rem,30%) 1fr;margin:0}}
dt,dd{{margin:0;padding:.4rem .5rem;border-top:1px solid #eaeef2;overflow-wrap:anywhere}}
dt{{color:#57606a;font-weight:600}}
dd ul{{margin:0;padding-left:1.1rem}}
code{{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}}
.warn,.bad,.note{{border-radius:6px;padding:.6rem .8rem}}
.warn{{background:#fff8c5;border:1px solid #d4a72c}}
.bad{{background:#ffebe9;border:1px solid #ff8182}}
.note{{background:#ddf4ff;border:1px solid #54aeff}}
nav ul{{list-style:none;padding:0;margin:.5rem 0 0;display:flex;flex-wrap:wrap;gap:.5rem 1.25rem}}
a{{color:#0969da}}
@media (max-width:32rem){{dl{{grid-template-columns:1fr}}dd{{border-top:0;padding-top:0}}
main{{padding:.75rem}}}}
</style></head>
<body><main>
<h1>{_text(facts["service"])} <small>v{_text(facts["version"])}</small>
<span class="badge {status_class}">{_text(facts["status"])}</span></h1>
<p>A Todo API: tasks per user under <code>/api/{{user_id}}/tasks</code>, with a bearer token.</p>
{_banners(facts)}
<h2>Database</h2>
<dl>{database_rows}</dl>
<h2>Authentication</h2>
<dl>{_row("Mode", auth["mode"], code=True) if auth["mode"] else ""}\
{_row("Tokens", auth["description"])}</dl>
<nav aria-label="Links"><ul>
<li><a href="/docs">API docs (/docs)</a></li>
<li><a href="/health">/health</a></li>
<li><a href="/ready">/ready</a></li>
<li><a href="/config/database">/config/database</a></li>
</ul></nav>
</main></body></html>"""
