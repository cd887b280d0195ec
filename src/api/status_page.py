"""`/`: what a visitor of the Space (or an operator) sees first.

HTML for browsers, the same facts as JSON for `Accept: application/json`. No external
assets, so it renders inside the Space's iframe and offline alike.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from src.api.system import ManagerDep, database_report, health_status
from src.config.settings import APP_NAME, APP_VERSION

router = APIRouter(tags=["system"])


def status_facts(request: Request, manager: Any) -> dict[str, Any]:
    report = database_report(manager)
    auth = getattr(request.app.state, "auth_mode", None)
    return {
        "service": APP_NAME,
        "version": APP_VERSION,
        "status": health_status(manager),
        "database": {
            "type": report["database_type"],
            "state": report["connection_state"],
            "why": report["fallback_reason"] or report["state_reason"],
            "url": report["primary_url"],
            "sqlite_path": report["sqlite_path"],
            "persistent": report["persistent"],
            "persistence_note": report["persistence_note"],
            "last_error": report["last_error"],
        },
        "auth": auth,
        "links": {"docs": "/docs", "health": "/health", "database": "/config/database"},
    }


@router.api_route(
    "/", methods=["GET", "HEAD"], include_in_schema=True, summary="Status page", response_model=None
)
async def status_page(request: Request, manager: ManagerDep) -> Response:
    facts = status_facts(request, manager)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(facts)
    return HTMLResponse(_render(facts))


def _row(label: str, value: Any) -> str:
    shown = "—" if value in (None, "") else str(value)
    return f"<tr><th>{escape(label)}</th><td>{escape(shown)}</td></tr>"


def _render(facts: dict[str, Any]) -> str:
    db = facts["database"]
    warning = ""
    if db["persistent"] is False:
        warning = (
            '<p class="warn" role="alert"><strong>Data will not survive a restart.</strong> '
            f"{escape(db['persistence_note'] or '')}</p>"
        )
    auth = facts.get("auth") or {}
    rows = "".join(
        [
            _row("Status", facts["status"]),
            _row("Database", db["type"] or "not connected"),
            _row("State", db["state"]),
            _row("Why", db["why"]),
            _row("Primary URL", db["url"]),
            _row("SQLite file", db["sqlite_path"]),
            _row("Persistent", {True: "yes", False: "no", None: "—"}[db["persistent"]]),
            _row("Last error", db["last_error"]),
            _row("Auth", auth.get("description") if isinstance(auth, dict) else auth),
        ]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(facts["service"])} · {escape(facts["status"])}</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem;color:#1f2328;background:#f6f8fa}}
main{{max-width:46rem;margin:auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;
padding:1rem 1.25rem}}
h1{{font-size:1.4rem;margin:.2rem 0 1rem}}
table{{border-collapse:collapse;width:100%}}
th,td{{text-align:left;vertical-align:top;padding:.4rem .5rem;border-top:1px solid #eaeef2;
overflow-wrap:anywhere}}
th{{width:32%;color:#57606a;font-weight:600}}
.warn{{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.6rem .8rem}}
nav a{{margin-right:1rem}}
</style></head>
<body><main>
<h1>{escape(facts["service"])} <small>v{escape(facts["version"])}</small></h1>
{warning}
<table>{rows}</table>
<nav><p><a href="/docs">API docs</a><a href="/health">/health</a>
<a href="/config/database">/config/database</a></p></nav>
</main></body></html>"""
