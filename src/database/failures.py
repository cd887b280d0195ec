"""What went wrong when talking to a database, in words an operator can act on."""

from __future__ import annotations

import errno
import re
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from src.core.redaction import redactor

# Spaces only let traffic out on these ports (see README, "Deploying to a Space").
SPACE_OUTBOUND_PORTS = frozenset({80, 443, 8080})
_MAX_MESSAGE = 400


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    AUTHENTICATION = "authentication_failed"
    DATABASE_MISSING = "database_missing"
    TLS = "tls"
    OTHER = "other"

    @property
    def transient(self) -> bool:
        """Worth retrying: the server may come up; a wrong password will not fix itself."""
        return self in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT, FailureKind.OTHER)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str  # sanitised: no user name, password or other secret
    hint: str | None = None

    def describe(self) -> str:
        text = f"{self.kind.value}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


_PG_SQLSTATE = {
    "28P01": FailureKind.AUTHENTICATION,
    "28000": FailureKind.AUTHENTICATION,
    "3D000": FailureKind.DATABASE_MISSING,
}
_MYSQL_CODES = {
    1045: FailureKind.AUTHENTICATION,
    1044: FailureKind.AUTHENTICATION,
    1698: FailureKind.AUTHENTICATION,
    1049: FailureKind.DATABASE_MISSING,
    2003: FailureKind.UNREACHABLE,
    2005: FailureKind.UNREACHABLE,
    2006: FailureKind.UNREACHABLE,
    2013: FailureKind.UNREACHABLE,
    2026: FailureKind.TLS,
}
_PATTERNS: tuple[tuple[re.Pattern[str], FailureKind], ...] = (
    (re.compile(r"timeout expired|timed out|timeout", re.I), FailureKind.TIMEOUT),
    (
        re.compile(r"password authentication failed|access denied|authentication", re.I),
        FailureKind.AUTHENTICATION,
    ),
    (re.compile(r"role .* does not exist", re.I), FailureKind.AUTHENTICATION),
    (
        re.compile(r"database .* does not exist|unknown database", re.I),
        FailureKind.DATABASE_MISSING,
    ),
    (re.compile(r"\bssl\b|\btls\b|certificate|channel binding", re.I), FailureKind.TLS),
    (
        re.compile(
            r"connection refused|could not translate host|failed to resolve|name or service|"
            r"nodename nor servname|network is unreachable|no route to host|can't connect|"
            r"could not connect|server closed the connection|connection reset|broken pipe|"
            r"lost connection|gone away|terminating connection|consuming input failed|"
            r"connection is closed|the connection is lost",
            re.I,
        ),
        FailureKind.UNREACHABLE,
    ),
)


def classify(exc: BaseException, url: URL | None = None, *, on_space: bool = False) -> Failure:
    """Classify a connection failure and produce a message safe to show anywhere."""
    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    kind = _kind_of(original)
    message = sanitize(_first_line(original), url)
    return Failure(kind=kind, message=message, hint=_hint(kind, url, on_space))


def is_connectivity_error(exc: BaseException) -> bool:
    """True when an error means "the database can't be reached", not "this query is wrong"."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return False
    elif not isinstance(exc, OSError | TimeoutError):
        return False
    return _kind_of(
        exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    ) in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT)


def sanitize(text: str, url: URL | None = None) -> str:
    if url is not None:
        redactor.add(url.username, url.password)
    cleaned = redactor.redact(text)
    if url is not None:
        for secret in (url.password, url.username):
            if secret:
                cleaned = cleaned.replace(secret, "***")
    cleaned = " ".join(cleaned.split())
    return cleaned[:_MAX_MESSAGE]


def _kind_of(exc: BaseException) -> FailureKind:
    if isinstance(exc, TimeoutError | socket.timeout):
        return FailureKind.TIMEOUT
    if isinstance(exc, ssl.SSLError):
        return FailureKind.TLS
    if isinstance(exc, ConnectionRefusedError):
        return FailureKind.UNREACHABLE
    if isinstance(exc, OSError) and exc.errno in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ECONNRESET,
        errno.EPIPE,
    ):
        return FailureKind.UNREACHABLE
    if isinstance(exc, socket.gaierror):
        return FailureKind.UNREACHABLE
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in _PG_SQLSTATE:
        return _PG_SQLSTATE[sqlstate]
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_CODES:
        code_kind = _MYSQL_CODES[args[0]]
        if code_kind is FailureKind.UNREACHABLE and "timed out" in str(exc).lower():
            return FailureKind.TIMEOUT
        return code_kind
    text = str(exc)
    for pattern, kind in _PATTERNS:
        if pattern.search(text):
            return kind
    return FailureKind.OTHER


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # psycopg puts one line per host tried; the first two are enough to act on.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[:2])


def _hint(kind: FailureKind, url: URL | None, on_space: bool) -> str | None:
    host = (url.host or "") if url is not None else ""
    port = url.port if url is not None else None
    if kind is FailureKind.AUTHENTICATION:
        return "check the user name and password in DATABASE_URL (special characters are fine)."
    if kind is FailureKind.DATABASE_MISSING:
        return (
            "the server is reachable but that database does not exist; create it or fix the name."
        )
    if kind is FailureKind.TLS:
        return "check sslmode / the server's TLS settings (hosted databases need sslmode=require)."
    if kind in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT):
        if host.startswith("db.") and host.endswith(".supabase.co"):
            return (
                "Supabase's direct host is IPv6-only on most projects; use the session pooler "
                "host (aws-0-<region>.pooler.supabase.com) instead."
            )
        default_port = 5432
        if url is not None and url.get_backend_name() in ("mysql", "mariadb"):
            default_port = 3306
        effective = port or default_port
        if on_space and effective not in SPACE_OUTBOUND_PORTS:
            return (
                f"Hugging Face Spaces only allow outbound connections to ports 80, 443 and 8080; "
                f"a database on port {effective} may be unreachable from a Space."
            )
        return "check the host and port, and that the server accepts connections from here."
    return None
