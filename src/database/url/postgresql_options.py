"""PostgreSQL (libpq) URL options: kept, fixed, translated or refused, one by one.

Only keywords the installed libpq knows reach psycopg; values with a fixed set of
choices are checked against it, `ssl` (asyncpg/JDBC) becomes `sslmode` only when
the translation is exact, and `client_encoding` must carry all of Unicode (see
`text_encoding`). `?host=` and `?port=` are checked (in `query_hosts`) against each
other and against the host written after the `@`, which SQLAlchemy would otherwise
let silently override one another."""

from __future__ import annotations

import difflib

from src.database.url.libpq import (
    PG_CHOICES,
    PG_INTEGERS,
    REQUIRE_AUTH_METHODS,
    SSLMODES,
    libpq_keywords,
)
from src.database.url.options import (
    TRUE_WORDS,
    Options,
    is_int,
    name_of,
    parse_query,
    take_credential,
)
from src.database.url.query_hosts import check_query_hosts, join_repeated_hosts
from src.database.url.text_encoding import postgresql_client_encoding

# Options other tools put in shared URLs that mean nothing to psycopg and have no
# security effect, with the reason shown to the user.
_PG_DROPPED = {
    "pgbouncer": "a Prisma setting",
    "schema": "a Prisma setting; to pick a schema use options=-csearch_path%3DNAME",
    "connection_limit": "a Prisma pool setting; this app sizes its own pool",
    "pool_timeout": "a Prisma pool setting",
    "socket_timeout": "a Prisma setting",
    "statement_cache_size": "an asyncpg/Prisma setting",
    "prepared_statement_cache_size": "an asyncpg setting",
}


def postgresql_options(
    text: str | None, source: str, *, netloc_host: bool, netloc_port: bool
) -> Options:
    """Keep and validate libpq keywords; see the module docstring for the policy."""
    opts = Options()
    if not text:
        return opts
    pairs, opts.repairs, opts.errors = parse_query(text, source, repeatable=frozenset({"host"}))
    pairs = join_repeated_hosts(pairs, opts, source)
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
            take_credential(opts, name, value)
        elif name not in keywords:
            _unknown_pg_option(opts, key, source, keywords)
        elif name in PG_CHOICES:
            checked = _check_choice(opts, name, value, source)
            if checked is not None:
                _set_once(opts, name, checked, source)
        elif name in PG_INTEGERS:
            if is_int(value, 0, 2**31 - 1):
                _set_once(opts, name, value, source)
            else:
                opts.errors.append(
                    f"The option '{name}' in {source} must be a whole number of seconds "
                    "(or 0/1 for keepalives)."
                )
        elif name == "client_encoding":
            if postgresql_client_encoding(opts, value, source):
                _set_once(opts, name, value, source)
        elif name == "require_auth":
            if _check_require_auth(opts, value, source):
                _set_once(opts, name, value, source)
        elif not value:
            opts.repairs.append(f"Removed the option {name_of(name)} because it has no value.")
        else:
            _set_once(opts, name, value, source)
    check_query_hosts(opts, source, netloc_host=netloc_host, netloc_port=netloc_port)
    _check_sslrootcert_system(opts, source)
    return opts


def _suggest(value: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value.lower(), [c.lower() for c in choices], n=1)
    if not close:
        return ""
    exact = next(c for c in choices if c.lower() == close[0])
    return f" (did you mean '{exact}'?)"


def _check_choice(opts: Options, key: str, value: str, source: str) -> str | None:
    choices = PG_CHOICES[key]
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
    if all(n in REQUIRE_AUTH_METHODS for n in names) and len(set(negated)) <= 1:
        return True
    opts.errors.append(
        f"The option 'require_auth' in {source} has an invalid value; use a comma list of "
        f"{', '.join(sorted(REQUIRE_AUTH_METHODS))} (all optionally prefixed with '!')."
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
    if lowered in TRUE_WORDS:
        mode = "require"
    elif lowered in SSLMODES:
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


def _check_sslrootcert_system(opts: Options, source: str) -> None:
    mode = opts.query.get("sslmode")
    if opts.query.get("sslrootcert") == "system" and mode not in (None, "verify-full"):
        opts.errors.append(
            f"{source} uses sslrootcert=system, which libpq only allows with "
            "sslmode=verify-full; change sslmode."
        )
