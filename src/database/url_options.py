"""Validation of the `?key=value` options of a database URL, per backend.

Options become driver keyword arguments, so an unknown or misspelt one only fails
at connect time, deep inside the driver. Checking them here turns that into a
sentence before any engine exists. TLS options are never guessed or dropped: a
value we cannot translate exactly is an error.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import unquote

# A name we may quote back in a message; anything else could be a pasted secret.
_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

# Keyword list of libpq 15, used only if psycopg cannot report the runtime one.
_LIBPQ_FALLBACK_KEYWORDS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "channel_binding",
        "gssencmode",
        "gsslib",
        "krbsrvname",
        "target_session_attrs",
        "service",
        "replication",
    }
)
# libpq marks these "D" (debug) rather than "*", yet they are as good as a password.
_EXTRA_SECRET_KEYWORDS = frozenset({"scram_client_key", "scram_server_key"})

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_PG_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": _SSLMODES,
    "channel_binding": ("disable", "prefer", "require"),
    "gssencmode": ("disable", "prefer", "require"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
    "ssl_min_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "ssl_max_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "sslsni": ("0", "1"),
    "sslcompression": ("0", "1"),
    "gssdelegation": ("0", "1"),
    "load_balance_hosts": ("disable", "random"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
}
_PG_INTEGERS = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)
_REQUIRE_AUTH_METHODS = frozenset(
    {"password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none"}
)

# Options other tools put in shared URLs that mean nothing to psycopg/PyMySQL and
# have no security effect, with the reason shown to the user.
_PG_DROPPED = {
    "pgbouncer": "a Prisma setting",
    "schema": "a Prisma setting; to pick a schema use options=-csearch_path%3DNAME",
    "connection_limit": "a Prisma pool setting; this app sizes its own pool",
    "pool_timeout": "a Prisma pool setting",
    "socket_timeout": "a Prisma setting",
    "statement_cache_size": "an asyncpg/Prisma setting",
    "prepared_statement_cache_size": "an asyncpg setting",
}
_MYSQL_DROPPED = {
    "reconnect": "a ClearDB/JDBC setting; the pool reconnects by itself",
    "connection_limit": "a Prisma pool setting; this app sizes its own pool",
    "pool_timeout": "a Prisma pool setting",
}

# Options SQLAlchemy's MySQL dialect passes to PyMySQL (the ssl_* ones folded into
# PyMySQL's `ssl` dict), with the kind of value each needs.
_MYSQL_KEPT: dict[str, str] = {
    "ssl_ca": "path",
    "ssl_cert": "path",
    "ssl_key": "path",
    "ssl_capath": "path",
    "ssl_cipher": "text",
    "ssl_check_hostname": "bool",
    "charset": "charset",
    "connect_timeout": "timeout",
    "read_timeout": "timeout",
    "write_timeout": "timeout",
    "init_command": "text",
    "unix_socket": "path",
}
_MYSQL_SSL_MODE_KEYS = frozenset({"ssl-mode", "ssl_mode", "sslmode"})
_MYSQL_MODES = {
    "DISABLED": "DISABLED",
    "DISABLE": "DISABLED",
    "REQUIRED": "REQUIRED",
    "REQUIRE": "REQUIRED",
    "VERIFY_CA": "VERIFY_CA",
    "VERIFY_IDENTITY": "VERIFY_IDENTITY",
    "VERIFY_FULL": "VERIFY_IDENTITY",
}
# SQLAlchemy parses these with `asbool`; anything else raises at connect time.
_BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0"})
_TRUE_WORDS = frozenset({"true", "1"})


@dataclass
class Options:
    """What the query string contributes to the final URL."""

    query: dict[str, str] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Credentials and database given as options (JDBC style), moved into the URL.
    user: str | None = None
    password: str | None = None
    dbname: str | None = None
    mysql_ssl_mode: str | None = None


@cache
def libpq_keywords() -> tuple[frozenset[str], frozenset[str]]:
    """All keywords the runtime libpq accepts, and those whose value is secret.

    Read from the libpq psycopg is linked against, because the valid set changes
    between libpq versions (e.g. `sslnegotiation` needs libpq 17).
    """
    try:
        # Imported lazily: a broken driver install must not break importing this module.
        import psycopg.pq

        defaults = psycopg.pq.Conninfo.get_defaults()
        keywords = frozenset(o.keyword.decode() for o in defaults)
        secret = frozenset(o.keyword.decode() for o in defaults if o.dispchar == b"*")
    except Exception:  # noqa: BLE001 - any driver trouble means: use the built-in list
        return _LIBPQ_FALLBACK_KEYWORDS, frozenset({"password", "sslpassword"})
    return keywords, secret | (_EXTRA_SECRET_KEYWORDS & keywords)


def is_secret_option(key: str) -> bool:
    """Whether an option's value must be masked and redacted."""
    lowered = key.lower()
    return (
        lowered in libpq_keywords()[1]
        or lowered in _EXTRA_SECRET_KEYWORDS
        or "password" in lowered
        or "secret" in lowered
    )


def name_of(key: str) -> str:
    """An option name fit for a message, or a neutral phrase if it might be data."""
    if _OPTION_NAME.fullmatch(key):
        return f"'{key}'"
    return "with an unusual name"


def parse_query(text: str, source: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Split `k=v&…` into pairs, decoding like libpq does (a `+` stays a `+`).

    Returns (pairs, repairs, errors). Exact duplicates are merged; a key repeated
    with different values is an error because drivers would receive a tuple.
    """
    pairs: list[tuple[str, str]] = []
    repairs: list[str] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for piece in text.split("&"):
        if not piece:
            continue
        raw_key, _, raw_value = piece.partition("=")
        try:
            key = unquote(raw_key, errors="strict")
            value = unquote(raw_value, errors="strict")
        except UnicodeDecodeError:
            errors.append(
                f"An option in {source} has a %-escape that is not valid UTF-8; "
                "fix its percent-encoding."
            )
            continue
        if not _OPTION_NAME.fullmatch(key):
            errors.append(
                f"{source} has an option with an invalid name after '?' or '&'; "
                "options look like ?sslmode=require&connect_timeout=10."
            )
            continue
        if key in seen:
            if seen[key] == value:
                repairs.append(f"Removed a repeated option {name_of(key)}.")
            else:
                errors.append(
                    f"The option {name_of(key)} appears more than once in {source} "
                    "with different values; keep only one."
                )
            continue
        seen[key] = value
        pairs.append((key, value))
    return pairs, repairs, errors


def _suggest(value: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value.lower(), [c.lower() for c in choices], n=1)
    if not close:
        return ""
    exact = next(c for c in choices if c.lower() == close[0])
    return f" (did you mean '{exact}'?)"


def _is_int(value: str, low: int, high: int) -> bool:
    return value.isascii() and value.isdigit() and low <= int(value) <= high


def _take_credential(opts: Options, key: str, value: str) -> None:
    """Keep `user`/`password`/`dbname` options aside; the resolver moves them into the URL."""
    if not value:
        opts.repairs.append(f"Ignored the empty option '{key}'.")
        return
    setattr(opts, key, value)


def _check_choice(opts: Options, key: str, value: str, source: str) -> str | None:
    choices = _PG_CHOICES[key]
    if value in choices:
        return value
    folded = {c.lower(): c for c in choices}
    if value.lower() in folded:
        # libpq compares these case-sensitively; the intent is unambiguous.
        opts.repairs.append(f"Wrote the value of '{key}' in the case libpq expects.")
        return folded[value.lower()]
    if not value:
        opts.errors.append(
            f"The option '{key}' in {source} has no value; use one of: {', '.join(choices)}."
        )
    else:
        opts.errors.append(
            f"The option '{key}' in {source} has an invalid value{_suggest(value, choices)}; "
            f"use one of: {', '.join(choices)}."
        )
    return None


def _check_require_auth(opts: Options, value: str, source: str) -> bool:
    methods = value.split(",")
    negated = [m.startswith("!") for m in methods]
    names = [m.removeprefix("!") for m in methods]
    if all(n in _REQUIRE_AUTH_METHODS for n in names) and len(set(negated)) <= 1:
        return True
    opts.errors.append(
        f"The option 'require_auth' in {source} has an invalid value; use a comma list of "
        f"{', '.join(sorted(_REQUIRE_AUTH_METHODS))} (all optionally prefixed with '!')."
    )
    return False


def _set_once(opts: Options, key: str, value: str, source: str) -> None:
    if key in opts.query and opts.query[key] != value:
        opts.errors.append(
            f"{source} sets '{key}' twice with different values (perhaps spelt differently, "
            "or once as 'ssl'); keep only one."
        )
        return
    opts.query[key] = value


def _translate_asyncpg_ssl(opts: Options, value: str, source: str) -> None:
    lowered = value.lower()
    if lowered in _TRUE_WORDS:
        mode = "require"
    elif lowered in _SSLMODES:
        mode = lowered
    else:
        opts.errors.append(
            f"The option 'ssl' in {source} cannot be translated safely; remove it and set "
            "sslmode instead (e.g. sslmode=require, or sslmode=disable only if the server "
            "has no TLS)."
        )
        return
    opts.repairs.append(f"Translated 'ssl' (asyncpg/JDBC spelling) to sslmode={mode}.")
    _set_once(opts, "sslmode", mode, source)


def postgresql_options(
    text: str | None, source: str, *, netloc_host: bool, netloc_port: bool
) -> Options:
    """Keep and validate libpq keywords; see the module docstring for the policy."""
    opts = Options()
    if not text:
        return opts
    pairs, opts.repairs, opts.errors = parse_query(text, source)
    keywords = libpq_keywords()[0]
    known = keywords | {"ssl"} | _PG_DROPPED.keys()
    for key, value in pairs:
        name = key
        if name != name.lower() and name.lower() in known:
            opts.repairs.append(f"Wrote the option name {name_of(key)} in lower case.")
            name = name.lower()
        if name in _PG_DROPPED:
            opts.repairs.append(
                f"Removed the option '{name}' ({_PG_DROPPED[name]}), which psycopg would refuse."
            )
        elif name == "ssl":
            _translate_asyncpg_ssl(opts, value, source)
        elif name in ("user", "password", "dbname"):
            _take_credential(opts, name, value)
        elif name not in keywords:
            _unknown_pg_option(opts, key, source, keywords)
        elif name in _PG_CHOICES:
            checked = _check_choice(opts, name, value, source)
            if checked is not None:
                _set_once(opts, name, checked, source)
        elif name in _PG_INTEGERS:
            if _is_int(value, 0, 2**31 - 1):
                _set_once(opts, name, value, source)
            else:
                opts.errors.append(
                    f"The option '{name}' in {source} must be a whole number of seconds "
                    "(or 0/1 for keepalives)."
                )
        elif name == "require_auth":
            if _check_require_auth(opts, value, source):
                _set_once(opts, name, value, source)
        elif not value:
            opts.repairs.append(f"Removed the option {name_of(name)} because it has no value.")
        else:
            _set_once(opts, name, value, source)
    _check_pg_hosts(opts, source, netloc_host=netloc_host, netloc_port=netloc_port)
    _check_sslrootcert_system(opts, source)
    return opts


def _unknown_pg_option(opts: Options, key: str, source: str, keywords: frozenset[str]) -> None:
    if key.lower() in ("sslaccept", "sslidentity"):
        opts.errors.append(
            f"The option {name_of(key)} in {source} is a Prisma TLS setting that psycopg "
            "does not understand; replace it with sslmode (e.g. sslmode=verify-full for "
            "sslaccept=strict, sslmode=require for accept_invalid_certs)."
        )
        return
    close = difflib.get_close_matches(key.lower(), sorted(keywords), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    opts.errors.append(
        f"The option {name_of(key)} in {source} is not a PostgreSQL connection option "
        f"known to libpq; remove it.{hint}"
    )


# One element of ?host=: a socket directory, a host name or an unbracketed IPv6 address.
_QUERY_HOST = re.compile(
    r"/[^\x00-\x1f]*|[A-Za-z0-9._-]+|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
)
_QUERY_HOST_PORT = re.compile(r"[A-Za-z0-9._-]+:(\d{1,5})")


def _check_pg_hosts(opts: Options, source: str, *, netloc_host: bool, netloc_port: bool) -> None:
    host = opts.query.get("host")
    port = opts.query.get("port")
    hosts = host.split(",") if host is not None else []
    if host is not None and netloc_host:
        # SQLAlchemy silently ignores the first host when both are given.
        opts.errors.append(
            f"{source} names a host both before the database and in ?host=; keep only one."
        )
    host_ports = [m[1] for h in hosts if (m := _QUERY_HOST_PORT.fullmatch(h))]
    if any(not (_QUERY_HOST.fullmatch(h) or _QUERY_HOST_PORT.fullmatch(h)) for h in hosts):
        opts.errors.append(
            f"The option 'host' in {source} must be host names, IP addresses or a socket "
            "directory (an absolute path), separated by commas."
        )
    elif host_ports and (len(hosts) > 1 or port is not None or netloc_port):
        # SQLAlchemy only understands HOST:PORT in ?host= for a single host.
        opts.errors.append(
            f"The option 'host' in {source} carries a port; write ?host=H1,H2&port=P1,P2 "
            "instead, with no port anywhere else."
        )
    elif host_ports and not _is_int(host_ports[0], 1, 65535):
        opts.errors.append(f"The port in the option 'host' in {source} must be 1 to 65535.")
    if port is None:
        return
    if netloc_port:
        opts.errors.append(
            f"{source} gives a port both after the host and in ?port=; keep only one."
        )
    ports = port.split(",")
    if not all(_is_int(p, 1, 65535) for p in ports):
        opts.errors.append(
            f"The option 'port' in {source} must be port numbers from 1 to 65535, "
            "separated by commas."
        )
    elif len(ports) > 1 and len(ports) != max(len(hosts), 1):
        opts.errors.append(
            f"{source} lists {max(len(hosts), 1)} host(s) but {len(ports)} ports; give one "
            "port, or one per host in the same order."
        )


def _check_sslrootcert_system(opts: Options, source: str) -> None:
    mode = opts.query.get("sslmode")
    if opts.query.get("sslrootcert") == "system" and mode not in (None, "verify-full"):
        opts.errors.append(
            f"{source} uses sslrootcert=system, which libpq only allows with "
            "sslmode=verify-full; change sslmode."
        )


def mysql_options(text: str | None, source: str) -> Options:
    """Keep the options PyMySQL understands; turn ssl-mode into `mysql_ssl_mode`."""
    opts = Options()
    if not text:
        return opts
    pairs, opts.repairs, opts.errors = parse_query(text, source)
    modes: set[str] = set()
    for key, value in pairs:
        lowered = key.lower()
        if lowered in _MYSQL_DROPPED:
            opts.repairs.append(
                f"Removed the option '{lowered}' ({_MYSQL_DROPPED[lowered]}), which PyMySQL "
                "would refuse."
            )
        elif lowered in ("user", "password"):
            _take_credential(opts, lowered, value)
        elif lowered in _MYSQL_SSL_MODE_KEYS or lowered in ("ssl", "ssl_disabled"):
            mode = _mysql_mode(opts, lowered, value, source)
            if mode is not None:
                modes.add(mode)
                opts.repairs.append(
                    f"Took the TLS setting {name_of(key)} out of the URL (PyMySQL would "
                    f"refuse it); the connection will use ssl-mode {mode}."
                )
        elif lowered in _MYSQL_KEPT and key == lowered:
            if _mysql_value_ok(_MYSQL_KEPT[lowered], value):
                opts.query[lowered] = value
            else:
                opts.errors.append(_mysql_value_error(lowered, _MYSQL_KEPT[lowered], source))
        else:
            opts.errors.append(_mysql_unknown(key, source))
    if len(modes) > 1:
        opts.errors.append(
            f"{source} sets conflicting TLS modes (for example ssl-mode and ssl_disabled); "
            "keep one ssl-mode option."
        )
    elif modes:
        opts.mysql_ssl_mode = modes.pop()
    return opts


def _mysql_mode(opts: Options, key: str, value: str, source: str) -> str | None:
    lowered = value.lower()
    if key == "ssl":
        if lowered in _TRUE_WORDS:
            return "REQUIRED"
        opts.errors.append(
            f"The option 'ssl' in {source} cannot be translated safely for PyMySQL; replace "
            "it with ssl-mode=REQUIRED (or VERIFY_IDENTITY, or DISABLED if the server has "
            "no TLS)."
        )
        return None
    if key == "ssl_disabled":
        if lowered in _TRUE_WORDS:
            return "DISABLED"
        opts.errors.append(
            f"The option 'ssl_disabled' in {source} does not turn TLS on with PyMySQL "
            "(any value disables it); remove it and use ssl-mode=REQUIRED instead."
        )
        return None
    normalised = value.strip().upper().replace("-", "_")
    if normalised in _MYSQL_MODES:
        return _MYSQL_MODES[normalised]
    if normalised in ("PREFERRED", "PREFER"):
        opts.errors.append(
            f"The ssl-mode PREFERRED in {source} cannot be honoured by PyMySQL (it has no "
            "'try TLS, else plain' mode); choose ssl-mode=REQUIRED or ssl-mode=DISABLED."
        )
        return None
    opts.errors.append(
        f"The TLS option {name_of(key)} in {source} has an invalid value; use one of "
        "DISABLED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY."
    )
    return None


def _mysql_value_ok(kind: str, value: str) -> bool:
    if kind == "timeout":
        return _is_int(value, 1, 31_536_000)
    if kind == "bool":
        return value.lower() in _BOOL_WORDS
    if kind == "charset":
        return re.fullmatch(r"[A-Za-z0-9_]{1,32}", value) is not None
    return bool(value)


def _mysql_value_error(key: str, kind: str, source: str) -> str:
    need = {
        "timeout": "a whole number of seconds from 1 to 31536000",
        "bool": "true or false",
        "charset": "a character set name such as utf8mb4",
    }.get(kind, "a non-empty value")
    return f"The option '{key}' in {source} must be {need}."


def _mysql_unknown(key: str, source: str) -> str:
    lowered = key.lower()
    if lowered == "sslaccept":
        return (
            f"The option 'sslaccept' in {source} is a Prisma TLS setting that PyMySQL does "
            "not understand; replace it with ssl-mode=VERIFY_IDENTITY (for strict) or "
            "ssl-mode=REQUIRED."
        )
    if "ssl" in lowered or "tls" in lowered:
        return (
            f"The TLS option {name_of(key)} in {source} is not understood by PyMySQL; use "
            "ssl-mode=REQUIRED, VERIFY_CA or VERIFY_IDENTITY (and ssl_ca=/path/to/ca.pem) "
            "instead."
        )
    kept = ", ".join(sorted(_MYSQL_KEPT))
    return (
        f"The option {name_of(key)} in {source} is not supported for MySQL here; remove it. "
        f"Supported options: ssl-mode, {kept}."
    )


def sqlite_options(text: str | None, source: str) -> Options:
    """SQLite takes no URL options here: the engine sets timeouts and thread checks,
    and URI options like mode=ro silently do nothing without uri=true."""
    opts = Options()
    if text:
        opts.errors.append(
            f"{source} has options after '?' but SQLite URLs take none here; remove "
            "everything from the '?' on (e.g. sqlite:////data/app.db)."
        )
    return opts
