"""The floor: the least code that serves the two benchmarked endpoints.

Raw Starlette and the database driver (sqlite3 or psycopg), the same SQL, the same JSON
and the same token check as the app, with none of the app's layers. The benchmark
reports the app as a ratio of this, which holds on any machine.

Run: BENCH_DATABASE=sqlite:////path/todo.db or postgresql://… BETTER_AUTH_SECRET=…
     uvicorn bench.floor:app --port 8001
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DATABASE = os.environ["BENCH_DATABASE"]
SECRET = os.environ["BETTER_AUTH_SECRET"]
IS_SQLITE = DATABASE.startswith("sqlite:")
PARAM = "?" if IS_SQLITE else "%s"
COLUMNS = "id, user_id, title, description, status, created_at, updated_at"

_local = threading.local()


def connection() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None:
        if IS_SQLITE:
            conn = sqlite3.connect(
                DATABASE.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
        else:
            import psycopg

            conn = psycopg.connect(DATABASE, autocommit=True, prepare_threshold=None)
        _local.conn = conn
    return conn


def authorised(request: Request, user_id: str) -> bool:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return False
    try:
        claims = jwt.decode(
            header[7:], SECRET, algorithms=["HS256"], options={"require": ["exp"]}, leeway=30
        )
    except jwt.PyJWTError:
        return False
    return bool(claims.get("sub") == user_id)


def _iso(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(value.replace(tzinfo=UTC).isoformat())


def _task(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "user_id": row[1],
        "title": row[2],
        "description": row[3],
        "status": row[4],
        "created_at": _iso(row[5]),
        "updated_at": _iso(row[6]),
    }


def _list(user_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    conn = connection()
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM tasks WHERE user_id = {PARAM} "
        f"ORDER BY created_at DESC, id DESC LIMIT {PARAM} OFFSET {PARAM}",
        (user_id, limit, offset),
    ).fetchall()
    total = conn.execute(
        f"SELECT count(*) FROM tasks WHERE user_id = {PARAM}", (user_id,)
    ).fetchone()[0]
    return [_task(row) for row in rows], int(total)


def _create(user_id: str, title: str, description: str | None) -> dict[str, Any]:
    now = datetime.now(UTC).replace(tzinfo=None)
    row = (str(uuid.uuid4()), user_id, title, description, "pending", now, now)
    conn = connection()
    if IS_SQLITE:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"INSERT INTO tasks ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        conn.execute("COMMIT")
    else:
        conn.execute(f"INSERT INTO tasks ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", row)
    return _task(row)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers, media_type="application/json")


async def tasks(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    if not authorised(request, user_id):
        return _json({"error": "unauthorised", "code": "UNAUTHORIZED"}, 401)
    if request.method == "GET":
        limit = int(request.query_params.get("limit", 100))
        offset = int(request.query_params.get("offset", 0))
        items, total = await run_in_threadpool(_list, user_id, limit, offset)
        return _json(items, headers={"X-Total-Count": str(total)})
    body = await request.json()
    task = await run_in_threadpool(_create, user_id, body["title"].strip(), body.get("description"))
    return _json(task, 201)


async def health(_: Request) -> Response:
    return _json({"status": "healthy"})


app = Starlette(
    routes=[
        Route("/api/{user_id}/tasks", tasks, methods=["GET", "POST"]),
        Route("/health", health),
    ]
)
