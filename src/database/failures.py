"""Why a database could not be used, in words an operator can act on.

A `Failure` is what `/config/database`, the status page, `doctor` and the log say: a
kind (the SPEC's classes: unreachable, timeout, authentication failed, database missing,
TLS, other — plus configuration, schema and connection-lost), a sanitised message and a
hint. Codes come from `error_codes` (types, SQLSTATEs, driver codes). Only one phase
has no code to read: libpq reports a failed connection attempt (refused, wrong password,
no such database) as an OperationalError without SQLSTATE, so for that phase alone the
fixed phrases libpq and the server use are matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from src.config.settings import LIBPQ_SOURCE
from src.core.redaction import redactor
from src.database.error_codes import Code, code_of, error_chain, timed_out
from src.database.option_files import UnreadableOptionFile
from src.database.url.masking import server_hosts

# Spaces only let traffic out on these ports (see README, "Outbound ports").
SPACE_OUTBOUND_PORTS = frozenset({80, 443, 8080})
_MAX_MESSAGE = 400


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    AUTHENTICATION = "authentication_failed"
    DATABASE_MISSING = "database_missing"
    TLS = "tls"
    CONFIGURATION = "configuration"  # the server answered: this URL can never work as is
    SCHEMA = "schema_incompatible"  # reachable, but its tables are not ones we can use
    CONNECTION_LOST = "connection_lost"  # a connection that worked was closed by the server
    OTHER = "other"

    @property
    def transient(self) -> bool:
        """Worth retrying: the server may come up; a wrong password will not fix itself."""
        return self in (
            FailureKind.UNREACHABLE,
            FailureKind.TIMEOUT,
            FailureKind.CONNECTION_LOST,
            FailureKind.OTHER,
        )

    @property
    def unreachable(self) -> bool:
        """The server did not answer: the only kinds that justify the SQLite fallback."""
        return self in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str  # sanitised: no user name, password or other secret
    hint: str | None = None

    def describe(self) -> str:
        text = f"{self.kind.value}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


_KIND_OF_CODE = {
    Code.CANNOT_CONNECT: FailureKind.UNREACHABLE,
    Code.TIMEOUT: FailureKind.TIMEOUT,
    Code.TERMINATED: FailureKind.CONNECTION_LOST,
    Code.CONNECTION_LOST: FailureKind.CONNECTION_LOST,
    Code.AUTHENTICATION: FailureKind.AUTHENTICATION,
    Code.DATABASE_MISSING: FailureKind.DATABASE_MISSING,
    Code.TLS: FailureKind.TLS,
    Code.SCHEMA: FailureKind.SCHEMA,
}

# Why a server refused the URL as configured: each says what to change.
_SUPAVISOR_USER = "supavisor_user"
_SERVER_PARAMETER = "server_parameter"

# libpq's connection-phase messages (it gives no SQLSTATE there); each anchored to the
# fixed wording of libpq or of the server's FATAL message.
_CONNECT_PHRASES: tuple[tuple[re.Pattern[str], FailureKind, str | None], ...] = (
    (re.compile(r"\btimeout expired\b", re.I), FailureKind.TIMEOUT, None),
    # Supavisor (Supabase's pooler) when the user is not postgres.<project-ref>.
    (
        re.compile(r"\bTenant or user not found\b", re.I),
        FailureKind.CONFIGURATION,
        _SUPAVISOR_USER,
    ),
    # The server's own words (guc.c, postgres.c) for a setting in the start-up packet
    # (`options=-c name=value`, PGOPTIONS) it will not take: it answered, so the host
    # and port are right and retrying cannot help.
    (
        re.compile(
            r"(?:invalid value for|outside the valid range for|permission denied to set) "
            r"parameter \"|unrecognized configuration parameter \"|"
            r"parameter \"[^\"]*\" cannot be (?:changed|set)|"
            r"invalid command-line arguments? for server process",
            re.I,
        ),
        FailureKind.CONFIGURATION,
        _SERVER_PARAMETER,
    ),
    (
        re.compile(
            r"password authentication failed|authentication failed for user|"
            r"role \".*\" does not exist|no password supplied|SCRAM authentication requires|"
            # Refusals of this login that are not about the password (SQLSTATE 28000 and
            # 42501 server-side): still the credentials to check, never the host.
            r"no pg_hba\.conf entry for|pg_hba\.conf rejects connection|"
            r"role \".*\" is not permitted to log in|permission denied for database",
            re.I,
        ),
        FailureKind.AUTHENTICATION,
        None,
    ),
    (re.compile(r"database \".*\" does not exist", re.I), FailureKind.DATABASE_MISSING, None),
    (
        re.compile(r"\bSSL\b|certificate|channel binding|does not support SSL|GSSAPI", re.I),
        FailureKind.TLS,
        None,
    ),
    (
        re.compile(
            r"Connection refused|failed to resolve host|could not translate host|"
            r"Network is unreachable|No route to host|server closed the connection|"
            r"Connection reset|No such file or directory|the database system is",
            re.I,
        ),
        FailureKind.UNREACHABLE,
        None,
    ),
)


def classify(
    exc: BaseException,
    url: URL | None = None,
    *,
    on_space: bool = False,
    source: str = "DATABASE_URL",
) -> Failure:
    """A failed attempt to open a connection (start-up, probes, `doctor --connect`).

    `source` is where the URL came from (`DATABASE_URL`, the PG* variables, `--to`…):
    the hint sends the operator there, not to a setting they never used."""
    unreadable = _unreadable_option_file(exc)
    if unreadable is not None:
        # A local file, not the server: "No such file" must not read as a missing socket.
        return Failure(
            FailureKind.CONFIGURATION,
            sanitize(str(unreadable), url),
            f"fix the option '{unreadable.option}' in {source}: it must name "
            f"{unreadable.need} this process can read (in a container, a path inside it).",
        )
    code = code_of(exc)
    kind = _KIND_OF_CODE.get(code)
    reason: str | None = None
    if kind is None or kind is FailureKind.CONNECTION_LOST:
        phrase_kind, reason = _connect_phrase(exc)
        kind = phrase_kind or kind or FailureKind.OTHER
    if kind is FailureKind.CONNECTION_LOST:
        # While connecting, a closed connection means nobody is serving there.
        kind = FailureKind.UNREACHABLE
    if timed_out(exc) and kind in (FailureKind.OTHER, FailureKind.UNREACHABLE):
        kind = FailureKind.TIMEOUT
    hint = _hint(kind, url, on_space, source, reason)
    return Failure(kind, sanitize(_first_lines(exc), url), hint)


def for_source(failure: Failure, url: URL | None, *, on_space: bool, source: str) -> Failure:
    """`failure` with the hint `classify` gives when it knows where `url` came from: a
    request's failure is classified where only the engine is known, and would send the
    operator to DATABASE_URL when they set the PG* variables."""
    if failure.kind is FailureKind.CONNECTION_LOST:
        return failure  # its hint names no setting
    return replace(failure, hint=_hint(failure.kind, url, on_space, source))


def connection_lost(exc: BaseException, url: URL | None) -> Failure:
    """A connection that had worked was closed under a request (not a failed connect)."""
    terminated = code_of(exc) is Code.TERMINATED
    message = (
        "the server ended the session (terminated by an administrator, an idle timeout "
        "or the provider suspending the database)"
        if terminated
        else "the connection broke during a statement"
    )
    detail = sanitize(_first_lines(exc), url)
    return Failure(
        FailureKind.CONNECTION_LOST,
        f"{message}: {detail}",
        "connections are replaced by fresh ones; if this repeats, check the provider's "
        "idle-timeout and auto-suspend settings.",
    )


def sanitize(text: str, url: URL | None = None) -> str:
    """One line, without any registered secret, at most 400 characters."""
    if url is not None:
        redactor.add(url.password)
        redactor.add_username(url.username)
    # The redactor masks a short or word-like password only as a whole token: replacing
    # a one-letter password everywhere turned "port 5432" into "***ort 5432".
    cleaned = " ".join(redactor.redact(text).split())
    return cleaned[:_MAX_MESSAGE]


def _unreadable_option_file(exc: BaseException) -> UnreadableOptionFile | None:
    for error in error_chain(exc):
        if isinstance(error, UnreadableOptionFile):
            return error
    return None


def _connect_phrase(exc: BaseException) -> tuple[FailureKind | None, str | None]:
    text = str(exc)
    for pattern, kind, reason in _CONNECT_PHRASES:
        if pattern.search(text):
            return kind, reason
    return None, None


def _first_lines(exc: BaseException) -> str:
    # The driver's own words: SQLAlchemy's wrapper appends the SQL and a help link.
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip() or type(exc).__name__
    # psycopg puts one line per host tried; the first two are enough to act on.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[:2])


def _hint(
    kind: FailureKind, url: URL | None, on_space: bool, source: str, reason: str | None = None
) -> str | None:
    if url is not None and url.get_backend_name() == "sqlite":
        return None  # a local file: no host, credentials or TLS to check
    hosts = server_hosts(url) if url is not None else ()
    host = hosts[0][0] if hosts else ""
    where = _Where(source)
    if kind is FailureKind.CONFIGURATION:
        return _configuration_hint(reason, where)
    if kind is FailureKind.AUTHENTICATION:
        return f"check {where.credentials} (special characters are fine)."
    if kind is FailureKind.DATABASE_MISSING:
        return (
            "the server is reachable but that database does not exist; create it or fix "
            f"{where.database}."
        )
    if kind is FailureKind.TLS:
        if url is not None and url.get_backend_name() in ("mysql", "mariadb"):
            return (
                f"check ssl-mode in {where.source} / the server's TLS settings (hosted "
                "databases need ssl-mode=REQUIRED, or VERIFY_IDENTITY with ssl_ca)."
            )
        return (
            f"check {where.sslmode} / the server's TLS settings (hosted databases need "
            "sslmode=require)."
        )
    if kind.unreachable:
        if host.startswith("db.") and host.endswith(".supabase.co"):
            return (
                "Supabase's direct host is IPv6-only on most projects; use the session pooler "
                "host (aws-0-<region>.pooler.supabase.com) instead."
            )
        port = _effective_port(url, hosts)
        if on_space and port not in SPACE_OUTBOUND_PORTS:
            return (
                f"Hugging Face Spaces only allow outbound connections to ports 80, 443 and 8080; "
                f"a database on port {port} may be unreachable from a Space."
            )
        return f"check {where.server}, and that the server accepts connections from here."
    return None


def _configuration_hint(reason: str | None, where: _Where) -> str | None:
    if reason == _SUPAVISOR_USER:
        return (
            "Supabase's pooler does not know this user: copy the URL from the project's "
            "Connect dialog (pooler); the user must be postgres.<project-ref> and the host "
            "aws-0-<region>.pooler.supabase.com exactly as shown there."
        )
    if reason == _SERVER_PARAMETER:
        return (
            f"the server answered but refused a setting sent at connect: fix or remove it in "
            f"{where.server_options} (or the PGOPTIONS variable)."
        )
    return None


@dataclass(frozen=True)
class _Where:
    """The parts of the URL's source to check, named as the operator set them."""

    source: str

    @property
    def _libpq(self) -> bool:
        return self.source == LIBPQ_SOURCE

    @property
    def credentials(self) -> str:
        if self._libpq:
            return "PGUSER and PGPASSWORD"
        return f"the user name and password in {self.source}"

    @property
    def database(self) -> str:
        return "PGDATABASE" if self._libpq else f"the database name in {self.source}"

    @property
    def sslmode(self) -> str:
        return "PGSSLMODE" if self._libpq else f"sslmode in {self.source}"

    @property
    def server_options(self) -> str:
        return f"the options (options=-c name=value) in {self.source}"

    @property
    def server(self) -> str:
        return "PGHOST and PGPORT" if self._libpq else f"the host and port in {self.source}"


def _effective_port(url: URL | None, hosts: tuple[tuple[str, int | None], ...]) -> int:
    default = 3306 if url is not None and url.get_backend_name() in ("mysql", "mariadb") else 5432
    ports = [port for _, port in hosts if port is not None]
    return ports[0] if ports else default
