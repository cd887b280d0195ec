"""The task list's query parameters as the OpenAPI document describes them.

They are documented as one exploded `form` object (which is what a client sends all the
same: `?status=pending&limit=10&offset=0`), because `status` and `completed` must agree
and OpenAPI can only say so within one schema: as separate parameters, a schema-valid
request (`?status=pending&completed=true`) would be refused with a 400. The route still
parses each parameter itself (src.api.tasks); unknown parameters are ignored.
"""

from __future__ import annotations

from typing import Any

LIMIT_MAX = 100
MAX_OFFSET = 1_000_000

_DISAGREEING = [
    {
        "required": ["status", "completed"],
        "properties": {"status": {"const": s}, "completed": {"const": c}},
    }
    for s, c in (("pending", True), ("completed", False))
]
LIST_QUERY_PARAMETER: dict[str, Any] = {
    "name": "query",
    "in": "query",
    "style": "form",
    "explode": True,
    "description": "The filter and the page, each its own query parameter "
    "(`?status=pending&limit=10&offset=0`).",
    "schema": {
        "type": "object",
        "properties": {
            "status": {
                "type": "string",
                "enum": ["all", "pending", "completed"],
                "default": "all",
                "description": "Which tasks: all (default), pending or completed.",
            },
            "completed": {
                "type": "boolean",
                "description": "The same filter as a boolean: `true` is `status=completed`, "
                "`false` is `status=pending`. With a `status` other than `all` the two must "
                "agree (400 otherwise).",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": LIMIT_MAX,
                "default": 100,
                "description": "Page size, 1 to 100.",
            },
            "offset": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_OFFSET,
                "default": 0,
                "description": "Tasks to skip (newest first).",
            },
        },
        "not": {"anyOf": _DISAGREEING},
    },
}
