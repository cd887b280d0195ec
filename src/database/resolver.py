"""Turn the raw DATABASE_URL text into a validated SQLAlchemy URL — pure, no I/O.

The result carries the repairs made (pasted quotes, `psql '…'`, `postgres://`, a
raw `@` in the password…) and sentences a person can act on for anything that
cannot be repaired without guessing. Nothing here raises, reads the environment
or logs, and no message ever contains the user name, the password or the raw
value (which may be a password pasted into the wrong field).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL

from src.database import url_options
from src.database.url_options import Options

Backend = Literal["postgresql", "mysql", "sqlite"]

MAX_URL_LENGTH = 4096
_MAX_CLEAN_PASSES = 8
# Real URLs have one or two; the bound keeps the split search cheap on garbage.
_MAX_AT_SIGNS = 64

_EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DBNAME"
_MISSING_WORDS = frozenset({"", "none", "null", "undefined"})

_INVISIBLE = frozenset("\ufeff\u200b\u200c\u200d\u2060\u180e")
_NBSP = frozenset("\u00a0\u2007\u202f")
# Straight, back and typographic quotes (as word processors and chat apps paste them).
_QUOTE_PAIRS = {
    '"': '"',
    "'": "'",
    "`": "`",
    "\u201c": "\u201d",
    "\u2018": "\u2019",
    "\u201e": "\u201c",
}
_QUOTES = frozenset(_QUOTE_PAIRS) | frozenset(_QUOTE_PAIRS.values())
_PREFIXES = (("psql", re.compile(r"psql\s+", re.I)), ("export", re.compile(r"export\s+", re.I)))
_JDBC = re.compile(r"jdbc:", re.I)
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63})\s*=\s*")
# What may follow `NAME=` for it to be an assignment we can drop.
_QUOTE_CLASS = "".join(sorted(_QUOTES))
_URLISH = re.compile(
    rf"[\s{_QUOTE_CLASS}]*(?:(?:jdbc:)?[A-Za-z][\w+.-]*://|[\s{_QUOTE_CLASS}]*$)", re.I
)

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+._-]{0,39})://")
_SCHEME_COLON = re.compile(r"([A-Za-z][A-Za-z0-9+._-]{0,39}):")
_KEYWORD_DSN = re.compile(r"(host|hostaddr|dbname|user|port|password|service)\s*=", re.I)
_VARIABLE = re.compile(r"\$\{[^}]*\}?|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%|\{\{.*\}\}")
_TEMPLATE = re.compile(r"<[^<>]*>|\[[A-Za-z][A-Za-z0-9 _-]*\]|\$\{|\$[A-Za-z_]")
_PASSWORD_TEMPLATE = re.compile(
    r"<[^<>]*>|\[[A-Za-z][A-Za-z0-9 _-]*\]|\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|\*{3,}"
)
_RAW_USERINFO = frozenset("@/?#[] ")
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+(?:%(?:25)?[A-Za-z0-9._~-]+)?)\]")
_SOCKET_HOST = re.compile(r"(%2[Ff][^:,/?@]*)(?::(\d+))?")
_HOST_ELEMENT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::(.*))?")
_QUERY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*(?:=.*)?", re.S)
_PG_BASES = frozenset({"postgres", "postgresql", "pgsql"})
_MYSQL_BASES = frozenset({"mysql", "mysql2"})


def mask_url(url: URL) -> str:
    """The URL for display: user name, password and secret option values as `***`."""
    text = f"{url.drivername}://"
    if url.username or url.password:
        text += ("***" if url.username else "") + (":***" if url.password else "") + "@"
    if url.host:
        text += ",".join(f"[{h}]" if ":" in h else h for h in url.host.split(","))
    if url.port is not None:
        text += f":{url.port}"
    if url.database is not None:
        text += "/" + quote(url.database, safe="/:@+ ")
    if url.query:
        pairs = []
        for key, values in url.query.items():
            for value in (values,) if isinstance(values, str) else values:
                shown = "***" if url_options.is_secret_option(key) else quote(value, safe="/:,")
                pairs.append(f"{quote(key)}={shown}")
        text += "?" + "&".join(pairs)
    return text


class _RedactedURL(URL):
    """A URL whose repr/str hides the user name too, so logging an engine is safe.

    `render_as_string(hide_password=False)` still gives the real URL.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return mask_url(self)


@dataclass(frozen=True, repr=False)
class Resolution:
    """Outcome of resolving one URL value."""

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

    @property
    def ok(self) -> bool:
        return self.url is not None and not self.errors

    def masked_url(self) -> str | None:
        return mask_url(self.url) if self.url is not None else None

    def secrets(self) -> tuple[str, ...]:
        """Values a log redactor must hide: user name, password, secret options."""
        found: list[str] = []
        if self.url is not None:
            found += [self.url.username or "", str(self.url.password or "")]
            for key, values in self.url.query.items():
                if url_options.is_secret_option(key):
                    found.extend((values,) if isinstance(values, str) else values)
        found += self.hidden_secrets
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
        hidden_secrets=tuple(dict.fromkeys(s for s in as_written if s)),
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
        return replace(failed, hidden_secrets=_credential_pieces(raw.strip()))
    text, repairs = _clean(raw, source)
    if text.lower() in _MISSING_WORDS:
        return _missing(source)
    result = _resolve_text(text, source, repairs)
    if result.ok:
        return result
    return replace(result, hidden_secrets=_credential_pieces(text))


def _credential_pieces(text: str) -> tuple[str, ...]:
    """Whatever in a rejected value might be a credential, written and decoded."""
    _, sep, rest = text.partition("://")
    if not sep:
        # Not a URL at all: it may well be a password pasted into the wrong field.
        return (text,)
    pieces: list[str] = []
    if "@" in rest:
        userinfo = rest[: rest.rindex("@")]
        user, _, password = userinfo.partition(":")
        pieces += [userinfo, user, password]
    for option in rest.rpartition("?")[2].split("&"):
        key, _, value = option.partition("=")
        if url_options.is_secret_option(key):
            pieces.append(value)
    pieces += [d for d in map(_decode, pieces) if d is not None]
    return tuple(dict.fromkeys(p for p in pieces if p))


def _resolve_text(text: str, source: str, repairs: list[str]) -> Resolution:
    problem = _shape_problem(text, source)
    if problem:
        return _failed(source, None, repairs, [problem])
    match = _SCHEME.match(text)
    if match is None:
        return _failed(source, None, repairs, [_not_a_url(text, source)])
    mapped = _map_scheme(match[1], source)
    if isinstance(mapped, str):
        return _failed(source, None, repairs, [mapped])
    drivername, backend, scheme_repairs = mapped
    repairs += scheme_repairs
    rest = text[match.end() :]
    if backend == "sqlite":
        return _resolve_sqlite(rest, drivername, source, repairs)
    return _resolve_server(rest, drivername, backend, source, repairs)


# --- cleaning ---------------------------------------------------------------------------


def _clean(text: str, source: str) -> tuple[str, list[str]]:
    """Undo the usual copy-paste damage, repeatedly, since it nests (export X="…")."""
    repairs: list[str] = []
    for _ in range(_MAX_CLEAN_PASSES):
        before = text
        text = _strip_edges(text, repairs)
        text = _strip_quotes(text, repairs)
        text = _strip_prefix(text, source, repairs)
        if text == before:
            break
    return text, repairs


def _strip_edges(text: str, repairs: list[str]) -> str:
    def strippable(ch: str) -> bool:
        return ch.isspace() or ch in _INVISIBLE

    start, end = 0, len(text)
    while start < end and strippable(text[start]):
        start += 1
    while end > start and strippable(text[end - 1]):
        end -= 1
    removed = text[:start] + text[end:]
    if "\ufeff" in removed:
        repairs.append("Removed a byte-order mark (U+FEFF) from the value.")
    if any(ch in _NBSP for ch in removed):
        repairs.append("Removed non-breaking spaces around the value.")
    if any(ch in _INVISIBLE and ch != "\ufeff" for ch in removed):
        repairs.append("Removed invisible zero-width characters around the value.")
    if any(ch.isspace() and ch not in _NBSP for ch in removed):
        repairs.append("Removed spaces or line breaks around the value.")
    return text[start:end]


def _strip_quotes(text: str, repairs: list[str]) -> str:
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        repairs.append("Removed the quotes around the value.")
        return text[1:-1]
    return text


def _strip_prefix(text: str, source: str, repairs: list[str]) -> str:
    for word, pattern in _PREFIXES:
        match = pattern.match(text)
        if match:
            repairs.append(f"Removed the leading '{word} ' (pasted from a command line).")
            return text[match.end() :]
    match = _JDBC.match(text)
    if match:
        repairs.append("Removed the leading 'jdbc:' (a Java driver prefix).")
        return text[match.end() :]
    match = _ASSIGNMENT.match(text)
    if match and _URLISH.match(text, match.end()):
        name = match[1] if match[1].upper() == source.upper() else "NAME"
        repairs.append(f"Removed the leading '{name}=' (pasted from an environment file).")
        return text[match.end() :]
    return text


def _shape_problem(text: str, source: str) -> str | None:
    """Problems with the value as a whole, reported before any parsing."""
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        return (
            f"{source} contains a control character or invalid Unicode inside the value "
            "(for example a line break, tab or NUL byte); it may be two values pasted "
            "together. Set it to a single URL."
        )
    if _VARIABLE.fullmatch(text) or re.fullmatch(r"<[^<>]*>", text):
        return (
            f"{source} holds an unexpanded variable or template placeholder instead of a "
            f"URL; set it to the real connection URL, e.g. {_EXAMPLE}."
        )
    if text[0] in _QUOTES or text[-1] in _QUOTES:
        return (
            f"{source} starts or ends with a quote that has no partner; remove the stray "
            "quote character."
        )
    return None


def _not_a_url(text: str, source: str) -> str:
    colon = _SCHEME_COLON.match(text)
    if colon and not isinstance(_map_scheme(colon[1], source), str):
        slashes = "///" if colon[1].lower().startswith("sqlite") else "//"
        return (
            f"In {source} the scheme must be followed by ':{slashes}', e.g. "
            f"{'sqlite:///path/to/app.db' if slashes == '///' else _EXAMPLE}."
        )
    if _KEYWORD_DSN.match(text):
        return (
            f"{source} looks like a libpq 'key=value' connection string; write it as a "
            f"URL instead: {_EXAMPLE}."
        )
    return (
        f"{source} is not a database URL. It should look like {_EXAMPLE}, "
        "mysql://USER:PASSWORD@HOST:3306/DBNAME or sqlite:///path/to/app.db."
    )


# --- scheme -----------------------------------------------------------------------------


def _map_scheme(scheme: str, source: str) -> tuple[str, Backend, list[str]] | str:
    """Map any spelling we support to the one sync driver installed for it.

    Returns (drivername, backend, repairs), or an error sentence.
    """
    lowered = scheme.lower()
    base, _, driver = lowered.partition("+")
    target: tuple[str, Backend] | None = None
    # Spellings that already mean exactly the target to SQLAlchemy 2.1.
    same: tuple[str, ...] = ()
    if base in _PG_BASES:
        target, same = ("postgresql+psycopg", "postgresql"), ("postgresql", "postgresql+psycopg")
    elif base in _MYSQL_BASES or lowered == "mysql-connector":
        target, same = ("mysql+pymysql", "mysql"), ("mysql+pymysql",)
    elif base == "mariadb":
        target, same = ("mariadb+pymysql", "mysql"), ("mariadb+pymysql",)
    elif base in ("sqlite", "sqlite3") and driver in ("", "pysqlite", "aiosqlite"):
        target, same = ("sqlite+pysqlite", "sqlite"), ("sqlite", "sqlite+pysqlite")
    if target is None:
        return (
            f"The scheme '{lowered}' in {source} is not supported; use postgresql:// "
            "(or postgres://), mysql://, mariadb:// or sqlite:///."
        )
    repairs = ["Wrote the URL scheme in lower case."] if scheme != lowered else []
    if lowered not in same:
        repairs.append(
            f"Used {target[0]}:// for the scheme '{lowered}://' (the driver installed here, "
            "used synchronously)."
        )
    return target[0], target[1], repairs


# --- SQLite -----------------------------------------------------------------------------


def _resolve_sqlite(rest: str, drivername: str, source: str, repairs: list[str]) -> Resolution:
    path, question, query = rest.partition("?")
    errors = url_options.sqlite_options(query or question, source).errors
    if path == ":memory:":
        repairs.append("Read sqlite://:memory: as the in-memory database sqlite:///:memory:.")
        path = "/:memory:"
    if path == "":
        database = None  # sqlite:// is SQLAlchemy's spelling of in-memory
    elif not path.startswith("/"):
        shown = f"sqlite:///{path}" if re.fullmatch(r"[\w.-]{1,80}", path) else "sqlite:///FILE"
        errors.append(
            f"{source} uses two slashes after 'sqlite:'; use three for a relative path "
            f"({shown}) or four for an absolute one (sqlite:////data/app.db)."
        )
        database = None
    else:
        database = _decode(path[1:])
        if database is None:
            errors.append(f"The SQLite path in {source} has a %-escape that is not valid UTF-8.")
        elif not database or database.endswith("/"):
            errors.append(
                f"{source} names no SQLite file after 'sqlite:///'; use "
                "sqlite:///app.db (or sqlite:// for a temporary in-memory database)."
            )
        elif re.search(r"(^|/)~", database):
            errors.append(
                f"{source} uses '~' in the SQLite path, which is not expanded; use an "
                "absolute path such as sqlite:////home/user/app.db."
            )
    if errors:
        return _failed(source, "sqlite", repairs, errors)
    return _accepted(source, "sqlite", _RedactedURL.create(drivername, database=database), repairs)


def _decode(text: str) -> str | None:
    """Percent-decode like SQLAlchemy/libpq (`+` stays `+`); None if not valid UTF-8."""
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return None


# --- PostgreSQL / MySQL -----------------------------------------------------------------


@dataclass
class _Parts:
    userinfo: str | None
    hostport: str
    database: str | None
    query: str | None


def _split(rest: str, at: int | None) -> _Parts:
    userinfo = rest[:at] if at is not None else None
    tail = rest[at + 1 :] if at is not None else rest
    cut = min((i for i in (tail.find("/"), tail.find("?")) if i >= 0), default=len(tail))
    hostport, tail = tail[:cut], tail[cut:]
    database: str | None = None
    if tail.startswith("/"):
        database, _, query = tail[1:].partition("?")
        return _Parts(userinfo, hostport, database, query if "?" in tail else None)
    return _Parts(userinfo, hostport, database, tail[1:] if tail else None)


def _plausible(parts: _Parts, backend: Backend) -> bool:
    """Whether this split reads as host[:port]/database[?query] — used to decide which
    `@` ends the user info when a raw password contains `@` as well."""
    if not parts.database or "/" in parts.database:
        return False
    if parts.query and not all(_QUERY_KEY.fullmatch(p) for p in parts.query.split("&") if p):
        return False
    if not parts.hostport:
        return _host_in_query(parts.query, backend)
    if backend == "postgresql" and _SOCKET_HOST.fullmatch(parts.hostport):
        return True
    elements = parts.hostport.split(",")
    if len(elements) > 1 and backend != "postgresql":
        return False
    for element in elements:
        match = _HOST_ELEMENT.fullmatch(element)
        if match is None or not (_HOST_NAME.fullmatch(match[1]) or _IPV6.fullmatch(match[1])):
            return False
        if match[2] is not None and not match[2].isdigit():
            return False
    return True


def _socket_host_to_option(parts: _Parts, repairs: list[str]) -> None:
    """libpq reads a host of %2Fvar%2Frun%2Fpostgresql as a socket directory;
    SQLAlchemy never decodes the host, so move it to ?host=, which both understand."""
    match = _SOCKET_HOST.fullmatch(parts.hostport)
    if match is None:
        return
    options = [f"host={match[1]}"] + ([f"port={match[2]}"] if match[2] else [])
    parts.query = "&".join(options + ([parts.query] if parts.query else []))
    parts.hostport = ""
    repairs.append("Moved the socket directory written as the host (%2F…) into ?host=.")


def _host_in_query(query: str | None, backend: Backend) -> bool:
    keys = ("host", "hostaddr") if backend == "postgresql" else ("unix_socket",)
    pieces = (query or "").split("&")
    return any(p.partition("=")[0] in keys and p.partition("=")[2] for p in pieces)


def _choose_split(rest: str, backend: Backend) -> _Parts | None:
    """Pick the one `@` after which the rest is a valid host/database; None if several do."""
    ats = [i for i, ch in enumerate(rest) if ch == "@"]
    candidates = [_split(rest, at) for at in [None, *ats]]
    plausible = [c for c in candidates if _plausible(c, backend)]
    if len(plausible) > 1:
        return None
    # With no plausible split, the last `@` gives the most useful error messages.
    return plausible[0] if plausible else candidates[-1]


def _resolve_server(
    rest: str, drivername: str, backend: Backend, source: str, repairs: list[str]
) -> Resolution:
    if rest.count("@") > _MAX_AT_SIGNS:
        return _failed(source, backend, repairs, [f"{source} contains too many '@' signs."])
    parts = _choose_split(rest, backend)
    if parts is None:
        return _failed(
            source,
            backend,
            repairs,
            [
                f"{source} has several '@' signs and it is ambiguous which one ends the "
                "password; percent-encode '@' in the password as %40 (and '/' as %2F, "
                "'?' as %3F, '#' as %23)."
            ],
        )
    if backend == "postgresql":
        _socket_host_to_option(parts, repairs)
    errors: list[str] = []
    user, password = _credentials(parts.userinfo, source, repairs, errors)
    host, port = _host_port(parts.hostport, backend, source, errors)
    if backend == "postgresql":
        opts = url_options.postgresql_options(
            parts.query, source, netloc_host=bool(host), netloc_port=port is not None
        )
    else:
        opts = url_options.mysql_options(parts.query, source)
    repairs += opts.repairs
    errors += opts.errors
    user, password = _merge_credentials(user, password, opts, source, repairs, errors)
    database = _database(parts.database, opts, host, source, repairs, errors)
    if not parts.hostport and not _host_given_as_option(opts, backend):
        errors.append(_missing_host(backend, source))
    if errors:
        return _failed(source, backend, repairs, errors)
    url = _RedactedURL.create(
        drivername,
        username=user or None,
        password=password or None,
        host=host or None,
        port=port,
        database=database,
        query=opts.query,
    )
    # The encoded spelling (p%40ss) is a secret too, should the raw value be printed.
    written = parts.userinfo.partition(":") if parts.userinfo else ("", "", "")
    return _accepted(source, backend, url, repairs, opts.mysql_ssl_mode, (written[0], written[2]))


def _credentials(
    userinfo: str | None, source: str, repairs: list[str], errors: list[str]
) -> tuple[str | None, str | None]:
    if userinfo is None:
        return None, None
    raw_user, colon, raw_password = userinfo.partition(":")
    placeholder = len(errors)
    if _TEMPLATE.search(raw_user):
        errors.append(
            f"The user name in {source} is still a template placeholder; replace it with "
            "the real database user."
        )
    if re.fullmatch(r"\*{3,}", raw_password):
        errors.append(
            f"The password in {source} is only asterisks, copied from a masked display; "
            "paste the real password."
        )
    elif _PASSWORD_TEMPLATE.fullmatch(raw_password):
        errors.append(
            f"The password in {source} is still a template placeholder; replace it with "
            "the real password (percent-encode @ as %40 if it contains one)."
        )
    if len(errors) > placeholder:
        return None, None
    if any(ch in _RAW_USERINFO for ch in userinfo):
        # A URL cannot hold these unencoded, so this was pasted as-is: take it literally.
        what = "password" if any(ch in _RAW_USERINFO for ch in raw_password) else "user name"
        repairs.append(
            f"The {what} contains characters a URL needs percent-encoded (such as @ / ? #); "
            "it was used exactly as written."
        )
        user, password = raw_user, raw_password
    else:
        decoded_user, decoded_password = _decode(raw_user), _decode(raw_password)
        if decoded_user is None or decoded_password is None:
            repairs.append(
                "The user name or password contains a %-sequence that is not valid "
                "percent-encoding; it was used exactly as written."
            )
        user = raw_user if decoded_user is None else decoded_user
        password = raw_password if decoded_password is None else decoded_password
    return user, (password if colon else None)


def _merge_credentials(
    user: str | None,
    password: str | None,
    opts: Options,
    source: str,
    repairs: list[str],
    errors: list[str],
) -> tuple[str | None, str | None]:
    """Move `?user=`/`?password=` (JDBC style) into the URL, where the driver expects them."""
    merged = []
    for name, current, given in (("user", user, opts.user), ("password", password, opts.password)):
        if given is None:
            merged.append(current)
        elif current:
            errors.append(
                f"{source} gives the {name} both before the host and as the option "
                f"'{name}'; keep only one."
            )
            merged.append(current)
        else:
            repairs.append(f"Moved the option '{name}' into the URL's user info.")
            merged.append(given)
    return merged[0], merged[1]


def _host_port(
    hostport: str, backend: Backend, source: str, errors: list[str]
) -> tuple[str | None, int | None]:
    if not hostport:
        return None, None
    if _TEMPLATE.search(hostport) or re.search(r":\w*port\w*$", hostport, re.I):
        errors.append(
            f"The host or port in {source} is still a template placeholder (like "
            "HOST:PORT or <host>); replace it with the real host name and port number."
        )
        return None, None
    elements = hostport.split(",")
    if len(elements) > 1 and backend != "postgresql":
        errors.append(f"{source} lists several hosts; MySQL URLs take exactly one host.")
        return None, None
    hosts: list[str] = []
    ports: list[str | None] = []
    for element in elements:
        host, port = _host_element(element, source, errors)
        if host is None:
            return None, None
        hosts.append(host)
        ports.append(port)
    if any(p is not None for p in ports[:-1]):
        errors.append(
            f"{source} gives a port for each host; SQLAlchemy cannot read that. Write the "
            "hosts and ports as options instead: ?host=HOST1,HOST2&port=PORT1,PORT2."
        )
        return None, None
    return ",".join(hosts), _port_number(ports[-1], source, errors)


def _host_element(element: str, source: str, errors: list[str]) -> tuple[str | None, str | None]:
    if element.count(":") >= 2 and "[" not in element:
        errors.append(
            f"The IPv6 address in {source} must be in brackets, e.g. "
            "postgresql://USER:PASSWORD@[2001:db8::1]:5432/DBNAME."
        )
        return None, None
    match = _HOST_ELEMENT.fullmatch(element)
    name, port = (match[1], match[2]) if match else (None, None)
    if name == "":
        errors.append(f"{source} has an empty host name in its host list.")
        return None, None
    ipv6 = _IPV6.fullmatch(name) if name else None
    if ipv6:
        return ipv6[1].replace("%25", "%"), port
    if name is None or not _HOST_NAME.fullmatch(name):
        errors.append(
            f"The host name in {source} contains characters that cannot be in a host name "
            "(only letters, digits, '.', '-' and '_'); check for a stray space, quote or "
            "an unencoded character from the password."
        )
        return None, None
    return name, port


def _port_number(port: str | None, source: str, errors: list[str]) -> int | None:
    if port is None:
        return None
    if not port:
        errors.append(f"{source} has a ':' after the host but no port number; add it or drop ':'.")
    elif not (port.isascii() and port.isdigit()):
        errors.append(f"The port in {source} is not a number; use e.g. 5432 or 3306.")
    elif not 1 <= int(port) <= 65535:
        errors.append(f"The port in {source} must be between 1 and 65535.")
    else:
        return int(port)
    return None


def _host_given_as_option(opts: Options, backend: Backend) -> bool:
    keys = ("host", "hostaddr") if backend == "postgresql" else ("unix_socket",)
    return any(opts.query.get(k) for k in keys)


def _missing_host(backend: Backend, source: str) -> str:
    if backend == "postgresql":
        return (
            f"{source} has no host; put it after the '@' ({_EXAMPLE}), or for a Unix "
            "socket use postgresql:///DBNAME?host=/var/run/postgresql."
        )
    return f"{source} has no host; put it after the '@' (mysql://USER:PASSWORD@HOST:3306/DBNAME)."


def _database(
    raw: str | None,
    opts: Options,
    host: str | None,
    source: str,
    repairs: list[str],
    errors: list[str],
) -> str | None:
    database = _decode(raw) if raw else None
    if raw and database is None:
        errors.append(f"The database name in {source} has a %-escape that is not valid UTF-8.")
        return None
    if opts.dbname is not None:
        if database:
            errors.append(
                f"{source} names the database both in the path and as the option 'dbname'; "
                "keep only one."
            )
            return None
        repairs.append("Moved the option 'dbname' into the URL path.")
        database = opts.dbname
    if not database:
        errors.append(_missing_database(host, source))
        return None
    if raw and ("/" in raw or "#" in raw or any(q in raw for q in _QUOTES) or raw.endswith(";")):
        errors.append(
            f"The database name in {source} contains '/', '#', a quote or a trailing ';' "
            "(left over from pasting?); fix it, or percent-encode the character if it is "
            "really part of the name."
        )
        return None
    if raw and _TEMPLATE.search(raw):
        errors.append(
            f"The database name in {source} is still a template placeholder; replace it "
            "with the real database name."
        )
        return None
    return database


def _missing_database(host: str | None, source: str) -> str:
    if host and re.search(r"\.supabase\.(com|co)$", host, re.I):
        return (
            f"{source} has no database name; Supabase's database is called postgres, so "
            "add /postgres after the port (…supabase.com:6543/postgres)."
        )
    return f"{source} has no database name; add /DBNAME after the host and port ({_EXAMPLE})."
