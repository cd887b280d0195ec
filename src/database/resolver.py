"""Turn the raw DATABASE_URL text into a validated SQLAlchemy URL — pure, no I/O.

The result carries the repairs made (pasted quotes, `psql '…'`, `postgres://`, a
raw `@` in the password…) and sentences a person can act on for anything that
cannot be repaired without guessing. Nothing here raises, reads the environment
or logs, and no message ever contains the user name, the password or the raw
value (which may be a password pasted into the wrong field).

This module runs the steps and shapes the outcome; each step lives in
`src.database.url`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlalchemy.engine import URL

from src.database.url.cleaning import MISSING_WORDS, clean, shape_problem
from src.database.url.masking import (
    credential_pieces,
    describe_server,
    is_secret_option,
    mask_url,
    server_hosts,
)
from src.database.url.scheme import SCHEME, Backend, map_scheme, not_a_url
from src.database.url.server import server_url
from src.database.url.sqlite import sqlite_url

__all__ = [
    "MAX_URL_LENGTH",
    "Backend",
    "Resolution",
    "describe_server",
    "mask_url",
    "resolve_database_url",
    "server_hosts",
]

MAX_URL_LENGTH = 4096


@dataclass(frozen=True, repr=False)
class Resolution:
    """Outcome of resolving one URL value.

    `repairs` are sentences for each change made, and for each reading a person
    might not expect (no host: libpq's default socket; a password without a user
    name: the driver's default user). `errors` are sentences for what stops the
    URL being used; neither ever holds a user name or password.
    """

    present: bool
    backend: Backend | None
    url: URL | None
    repairs: tuple[str, ...]
    errors: tuple[str, ...]
    mysql_ssl_mode: str | None = None
    source: str = "DATABASE_URL"
    # Credential-like parts of the raw value (as written and decoded). Kept even when
    # the value is rejected: a broken URL is when someone is most likely to print it.
    hidden_secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    hidden_usernames: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.url is not None and not self.errors

    def masked_url(self) -> str | None:
        return mask_url(self.url) if self.url is not None else None

    def secrets(self) -> tuple[str, ...]:
        """Values a log redactor must hide wherever they appear: the password, secret
        options, and whatever of a rejected value might be one."""
        found: list[str] = []
        if self.url is not None:
            found.append(str(self.url.password or ""))
            for key, values in self.url.query.items():
                if is_secret_option(key):
                    found.extend((values,) if isinstance(values, str) else values)
        found += self.hidden_secrets
        return tuple(dict.fromkeys(s for s in found if s))

    def usernames(self) -> tuple[str, ...]:
        """User names: hidden where they stand as credentials (`user "app"`), not as words
        (a user named `app` must not mask the path `/home/user/app`)."""
        found = [self.url.username or ""] if self.url is not None else []
        found += self.hidden_usernames
        return tuple(dict.fromkeys(s for s in found if s))

    def __repr__(self) -> str:
        return (
            f"Resolution(present={self.present!r}, backend={self.backend!r}, "
            f"url={self.masked_url()!r}, repairs={self.repairs!r}, errors={self.errors!r}, "
            f"mysql_ssl_mode={self.mysql_ssl_mode!r}, source={self.source!r})"
        )


def resolve_database_url(raw: str | None, *, source: str = "DATABASE_URL") -> Resolution:
    """Clean, repair and validate a database URL. Never raises."""
    if not isinstance(source, str) or not source:
        source = "DATABASE_URL"
    try:
        return _resolve(raw, source)
    except Exception:  # noqa: BLE001 - a configuration value must never crash start-up
        failed = _failed(
            source, None, [], [f"{source} could not be interpreted; check its format."]
        )
        return replace(failed, hidden_secrets=(raw,) if isinstance(raw, str) else ())


def _missing(source: str) -> Resolution:
    return Resolution(present=False, backend=None, url=None, repairs=(), errors=(), source=source)


def _accepted(
    source: str,
    backend: Backend,
    url: URL,
    repairs: list[str],
    ssl_mode: str | None = None,
    as_written: tuple[str, ...] = (),
) -> Resolution:
    return Resolution(
        present=True,
        backend=backend,
        url=url,
        repairs=tuple(dict.fromkeys(repairs)),
        errors=(),
        mysql_ssl_mode=ssl_mode,
        source=source,
        hidden_secrets=tuple(dict.fromkeys(s for s in as_written[1:] if s)),
        hidden_usernames=tuple(s for s in as_written[:1] if s),
    )


def _failed(
    source: str, backend: Backend | None, repairs: list[str], errors: list[str]
) -> Resolution:
    return Resolution(
        present=True,
        backend=backend,
        url=None,
        repairs=tuple(dict.fromkeys(repairs)),
        errors=tuple(dict.fromkeys(errors)),
        source=source,
    )


def _resolve(raw: object, source: str) -> Resolution:
    if raw is None:
        return _missing(source)
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        return _failed(source, None, [], [f"{source} must be text."])
    if len(raw) > MAX_URL_LENGTH:
        failed = _failed(
            source, None, [], [f"{source} is longer than {MAX_URL_LENGTH} characters."]
        )
        secrets, usernames = credential_pieces(raw.strip())
        return replace(failed, hidden_secrets=secrets, hidden_usernames=usernames)
    text, repairs = clean(raw, source)
    if text.lower() in MISSING_WORDS:
        return _missing(source)
    result = _resolve_text(text, source, repairs)
    if result.ok:
        return result
    secrets, usernames = credential_pieces(text)
    return replace(result, hidden_secrets=secrets, hidden_usernames=usernames)


def _resolve_text(text: str, source: str, repairs: list[str]) -> Resolution:
    problem = shape_problem(text, source)
    if problem:
        return _failed(source, None, repairs, [problem])
    match = SCHEME.match(text)
    if match is None:
        return _failed(source, None, repairs, [not_a_url(text, source)])
    mapped = map_scheme(match[1], source)
    if isinstance(mapped, str):
        return _failed(source, None, repairs, [mapped])
    drivername, backend, scheme_repairs = mapped
    repairs += scheme_repairs
    rest = text[match.end() :]
    if backend == "sqlite":
        sqlite = sqlite_url(rest, drivername, source, repairs)
        if isinstance(sqlite, list):
            return _failed(source, backend, repairs, sqlite)
        return _accepted(source, backend, sqlite, repairs)
    server = server_url(rest, drivername, backend, source, repairs)
    if isinstance(server, list):
        return _failed(source, backend, repairs, server)
    return _accepted(source, backend, server.url, repairs, server.mysql_ssl_mode, server.as_written)
