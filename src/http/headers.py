"""The headers every response carries, whichever layer writes it: the app's middleware,
the CORS preflight answer and the protocol's own refusals (408, 431, 400).

Standard library only: the protocol module imports this in every worker before the
application exists.
"""

from __future__ import annotations

import re
import uuid

# A caller's X-Request-ID is echoed only when it is this tame (no spaces, no controls).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
)
# Responses carry users' tasks (or errors about them): no cache, shared or private, may
# keep them, unless a route says otherwise.
NO_STORE = (b"cache-control", b"no-store")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from(value: str | None) -> str:
    """The caller's request id when it is safe to echo, else a new one."""
    if value is not None and _REQUEST_ID.match(value):
        return value
    return new_request_id()


def standard_headers(request_id: str) -> list[tuple[bytes, bytes]]:
    """`X-Request-ID` and the security headers (not Cache-Control: a route may set its own)."""
    return [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
