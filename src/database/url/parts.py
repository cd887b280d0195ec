"""Taking `userinfo@hosts/database?query` apart, and percent-decoding the pieces.

People paste passwords containing `@`, `/` or `?` without encoding them, which no
URL parser reads correctly. Rather than guess, every `@` is tried as the end of
the user info and the split is kept only when exactly one reading is plausible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from src.database.url.hosts import SOCKET_HOST, plausible_hostport
from src.database.url.query_hosts import host_in_query
from src.database.url.scheme import Backend

# Real URLs have one or two; the bound keeps the split search cheap on garbage.
MAX_AT_SIGNS = 64

_QUERY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*(?:=.*)?", re.S)


@dataclass
class Parts:
    """The raw, still-encoded pieces after the scheme of a server URL."""

    userinfo: str | None
    hostport: str
    database: str | None
    query: str | None


def decode(text: str) -> str | None:
    """Percent-decode like SQLAlchemy/libpq (`+` stays `+`); None if not valid UTF-8."""
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return None


def choose_split(rest: str, backend: Backend) -> Parts | None:
    """Pick the one `@` after which the rest is a valid host/database; None if several do."""
    ats = [i for i, ch in enumerate(rest) if ch == "@"]
    candidates = [_split(rest, at) for at in [None, *ats]]
    plausible = [c for c in candidates if _plausible(c, backend)]
    if not plausible and backend == "postgresql":
        # No host at all means libpq's default socket; only read it that way when no
        # split gives a host, so `p@/x?y=1@host/db` still reads as a password with '@'.
        plausible = [c for c in candidates if _plausible(c, backend, socket_default=True)]
    if len(plausible) > 1:
        return None
    # With no plausible split, the last `@` gives the most useful error messages.
    return plausible[0] if plausible else candidates[-1]


def _split(rest: str, at: int | None) -> Parts:
    userinfo = rest[:at] if at is not None else None
    tail = rest[at + 1 :] if at is not None else rest
    cut = min((i for i in (tail.find("/"), tail.find("?")) if i >= 0), default=len(tail))
    hostport, tail = tail[:cut], tail[cut:]
    database: str | None = None
    if tail.startswith("/"):
        database, _, query = tail[1:].partition("?")
        return Parts(userinfo, hostport, database, query if "?" in tail else None)
    return Parts(userinfo, hostport, database, tail[1:] if tail else None)


def _plausible(parts: Parts, backend: Backend, *, socket_default: bool = False) -> bool:
    """Whether this split reads as host[:port]/database[?query] (or, with
    `socket_default`, as a PostgreSQL URL with no host at all)."""
    if not parts.database or "/" in parts.database:
        return False
    if parts.query and not all(_QUERY_KEY.fullmatch(p) for p in parts.query.split("&") if p):
        return False
    if not parts.hostport:
        return socket_default or host_in_query(parts.query, backend)
    return plausible_hostport(parts.hostport, backend)


def socket_host_to_option(parts: Parts, source: str, repairs: list[str], errors: list[str]) -> None:
    """libpq reads a host of %2Fvar%2Frun%2Fpostgresql as a socket directory;
    SQLAlchemy never decodes the host, so move it to ?host=, which both understand."""
    match = SOCKET_HOST.fullmatch(parts.hostport)
    if match is None:
        return
    keys = {p.partition("=")[0].lower() for p in (parts.query or "").split("&")}
    if "host" in keys:
        # Moved, it would join the option's list of hosts: not what either spelling meant.
        errors.append(
            f"{source} names a host both before the database and in ?host=; keep only one."
        )
        parts.hostport = ""
        return
    options = [f"host={match[1]}"] + ([f"port={match[2]}"] if match[2] else [])
    parts.query = "&".join(options + ([parts.query] if parts.query else []))
    parts.hostport = ""
    repairs.append("Moved the socket directory written as the host (%2F…) into ?host=.")
