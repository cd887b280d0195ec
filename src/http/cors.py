"""CORS: Starlette's middleware, with the preflight answered the way the rest of the API
answers.

Starlette decides what a preflight may do (its semantics are kept as they are); it writes
a refusal as `400 text/plain "Disallowed CORS origin"`, and a preflight never reaches our
request middleware, since CORS is the outermost layer (so that every other response,
the last-resort 500 included, carries the CORS headers). Here a refusal is our JSON
error body, `CORS_NOT_ALLOWED`, with a sentence saying what was refused and where that
is configured; and every preflight answer carries the headers all responses carry.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from src.http.headers import NO_STORE, request_id_from, standard_headers

CORS_NOT_ALLOWED = "CORS_NOT_ALLOWED"
# Starlette's refusal text is this prefix and the refused parts, comma-separated.
_STARLETTE_REFUSAL = "Disallowed CORS "
# Client-supplied values are echoed at most this long.
_MAX_ECHO = 200


class ApiCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers=request_headers)
        if response.status_code >= 400:
            refused = bytes(response.body).decode("utf-8", "replace")
            sentence = refusal_sentence(refused.removeprefix(_STARLETTE_REFUSAL), request_headers)
            payload = json.dumps(
                {"error": sentence, "code": CORS_NOT_ALLOWED}, separators=(",", ":")
            ).encode()
            response.body = payload
            response.headers["content-type"] = "application/json"
            response.headers["content-length"] = str(len(payload))
        request_id = request_id_from(request_headers.get("x-request-id"))
        response.raw_headers.extend([*standard_headers(request_id), NO_STORE])
        return response


def refusal_sentence(refused: str, request_headers: Headers) -> str:
    """What Starlette refused (`origin, method`…), said in words."""
    parts = [part.strip() for part in refused.split(",") if part.strip()]
    reasons = []
    for part in parts:
        if part == "origin":
            origin = _echo(request_headers.get("origin", ""))
            reasons.append(
                f"the origin {origin} is not allowed (CORS_ORIGINS lists the origins that may "
                "call this API from a browser)"
            )
        elif part == "method":
            method = _echo(request_headers.get("access-control-request-method", ""))
            reasons.append(f"the method {method} is not allowed")
        elif part == "headers":
            requested = _echo(request_headers.get("access-control-request-headers", ""))
            reasons.append(f"a requested header ({requested}) is not allowed")
        elif part == "private-network":
            reasons.append("access from a public site to a private network is not allowed")
        else:
            reasons.append(f"{_echo(part)} is not allowed")
    if not reasons:
        reasons.append("the request is not allowed (CORS_ORIGINS lists the allowed origins)")
    return "CORS preflight refused: " + "; ".join(reasons) + "."


def _echo(value: str) -> str:
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= _MAX_ECHO else value[: _MAX_ECHO - 1] + "…"
