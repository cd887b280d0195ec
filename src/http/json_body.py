"""Request bodies parsed as strict JSON (RFC 8259), whatever Python's `json` tolerates.

`json.loads` accepts `NaN`, `Infinity` and `-Infinity`, turns `1e999` into infinity,
and raises RecursionError on deep nesting and UnicodeDecodeError on bytes that are not
UTF-8. Each of those would otherwise become a 500 (a non-finite value cannot be echoed
back in a JSON error) or a generic 400. Here each is a JSONDecodeError, which FastAPI
reports as `json_invalid`: a 400 `VALIDATION_ERROR` like any other malformed body
(src.api.task_requests reads the task bodies with it).
"""

from __future__ import annotations

import json
import math
from typing import Any


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large for a number")
    return value


def loads_strict(body: bytes) -> Any:
    """Parse `body`; every kind of invalid input raises json.JSONDecodeError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("the body is not valid UTF-8", "", exc.start) from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError("the body is nested too deeply", text, 0) from None
