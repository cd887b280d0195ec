"""A PostgreSQL or MySQL URL, assembled from its parts once each has been vetted.

Every part is checked even after one fails, so a person fixing the value sees all
of its problems at once rather than one per restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.engine import URL

from src.database.url.cleaning import QUOTES, TEMPLATE
from src.database.url.credentials import credentials, merge_credentials
from src.database.url.hosts import host_given_as_option, host_port, missing_host
from src.database.url.masking import RedactedURL
from src.database.url.mysql_options import mysql_options
from src.database.url.options import Options
from src.database.url.parts import MAX_AT_SIGNS, choose_split, decode, socket_host_to_option
from src.database.url.postgresql_options import postgresql_options
from src.database.url.scheme import EXAMPLE_URL, Backend


@dataclass(frozen=True)
class ServerURL:
    """A URL the driver can use, with what the resolver reports alongside it."""

    url: URL
    mysql_ssl_mode: str | None
    # The encoded spelling (p%40ss) is a secret too, should the raw value be printed.
    as_written: tuple[str, str]


def server_url(
    rest: str, drivername: str, backend: Backend, source: str, repairs: list[str]
) -> ServerURL | list[str]:
    """The URL from everything after `scheme://`, or the errors that prevent it.

    Repairs made on the way are appended to `repairs`.
    """
    if rest.count("@") > MAX_AT_SIGNS:
        return [f"{source} contains too many '@' signs."]
    parts = choose_split(rest, backend)
    if parts is None:
        return [
            f"{source} has several '@' signs and it is ambiguous which one ends the "
            "password; percent-encode '@' in the password as %40 (and '/' as %2F, "
            "'?' as %3F, '#' as %23)."
        ]
    if backend == "postgresql":
        socket_host_to_option(parts, repairs)
    errors: list[str] = []
    user, password = credentials(parts.userinfo, source, repairs, errors)
    host, port = host_port(parts.hostport, backend, source, errors)
    if backend == "postgresql":
        opts = postgresql_options(
            parts.query, source, netloc_host=bool(host), netloc_port=port is not None
        )
    else:
        opts = mysql_options(parts.query, source)
    repairs += opts.repairs
    errors += opts.errors
    user, password = merge_credentials(user, password, opts, source, repairs, errors)
    database = _database(parts.database, opts, host, source, repairs, errors)
    if not parts.hostport and not host_given_as_option(opts, backend):
        errors.append(missing_host(backend, source))
    if errors:
        return errors
    url = RedactedURL.create(
        drivername,
        username=user or None,
        password=password or None,
        host=host or None,
        port=port,
        database=database,
        query=opts.query,
    )
    written = parts.userinfo.partition(":") if parts.userinfo else ("", "", "")
    return ServerURL(url, opts.mysql_ssl_mode, (written[0], written[2]))


def _database(
    raw: str | None,
    opts: Options,
    host: str | None,
    source: str,
    repairs: list[str],
    errors: list[str],
) -> str | None:
    """The decoded database name, from the path or `?dbname=`; None after an error."""
    database = decode(raw) if raw else None
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
    if raw and ("/" in raw or "#" in raw or any(q in raw for q in QUOTES) or raw.endswith(";")):
        errors.append(
            f"The database name in {source} contains '/', '#', a quote or a trailing ';' "
            "(left over from pasting?); fix it, or percent-encode the character if it is "
            "really part of the name."
        )
        return None
    if TEMPLATE.search(raw or database):
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
    return f"{source} has no database name; add /DBNAME after the host and port ({EXAMPLE_URL})."
