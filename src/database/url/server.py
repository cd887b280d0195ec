"""A PostgreSQL or MySQL URL, assembled from its parts once each has been vetted.

Every part is checked even after one fails, so a person fixing the value sees all
of its problems at once rather than one per restart. Two libpq shapes SQLAlchemy
cannot carry as written are rewritten into ones it passes on unchanged: a host
list with a port per host becomes `?host=H1,H2&port=P1,P2` (SQLAlchemy's
documented multi-host form, `_split_multihost_from_url` in its PostgreSQL
dialect), and no host at all stays no host, which libpq reads as its default
Unix socket directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.engine import URL

from src.database.url.cleaning import QUOTES, TEMPLATE
from src.database.url.credentials import credentials, default_user_notice, merge_credentials
from src.database.url.hosts import HostList, host_list, missing_host
from src.database.url.masking import RedactedURL
from src.database.url.mysql_options import mysql_options
from src.database.url.options import Options
from src.database.url.parts import MAX_AT_SIGNS, choose_split, decode, socket_host_to_option
from src.database.url.placeholders import is_template_word
from src.database.url.postgresql_options import postgresql_options
from src.database.url.query_hosts import host_given_as_option
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
    errors: list[str] = []
    if backend == "postgresql":
        socket_host_to_option(parts, source, repairs, errors)
    user, password = credentials(parts.userinfo, source, repairs, errors)
    hosts = host_list(parts.hostport, backend, source, repairs, errors)
    host_count = len(hosts.hosts) if hosts else 0
    netloc_port = hosts is not None and any(p is not None for p in hosts.ports)
    if backend == "postgresql":
        opts = postgresql_options(
            parts.query, source, netloc_host=host_count > 0, netloc_port=netloc_port
        )
    else:
        opts = mysql_options(parts.query, source)
    repairs += opts.repairs
    errors += opts.errors
    user, password = merge_credentials(user, password, opts, source, repairs, errors)
    first_host = hosts.hosts[0] if hosts else None
    database = _database(parts.database, opts, first_host, source, repairs, errors)
    no_host = not parts.hostport and not host_given_as_option(opts, backend)
    if no_host and backend == "mysql":
        errors.append(missing_host(source))
    if errors:
        return errors
    if no_host:
        repairs.append(_SOCKET_DEFAULT.format(source=source))
    default_user_notice(user, password, backend, source, repairs)
    host, port = _place_hosts(hosts, opts, repairs)
    url = RedactedURL.create(
        drivername,
        username=user or None,
        password=password or None,
        host=host,
        port=port,
        database=database,
        query=opts.query,
    )
    written = parts.userinfo.partition(":") if parts.userinfo else ("", "", "")
    return ServerURL(url, opts.mysql_ssl_mode, (written[0], written[2]))


_SOCKET_DEFAULT = (
    "{source} gives no host, so libpq connects through the local Unix socket in its "
    "default directory (PGHOST if set, else /var/run/postgresql on Debian and Ubuntu, "
    "/tmp on most other systems)."
)


def _place_hosts(
    hosts: HostList | None, opts: Options, repairs: list[str]
) -> tuple[str | None, int | None]:
    """The URL's host and port; a host list with ports goes into ?host=&port= instead."""
    if hosts is None:
        return None, None
    if len(hosts.hosts) == 1:
        return hosts.hosts[0], hosts.ports[0]
    if all(p is None for p in hosts.ports):
        return ",".join(hosts.hosts), None
    # First, where a person reading the masked URL looks for them. An empty entry is
    # libpq's "default port" for that host.
    opts.query = {
        "host": ",".join(hosts.hosts),
        "port": ",".join("" if p is None else str(p) for p in hosts.ports),
        **opts.query,
    }
    repairs.append(
        "Wrote the host list as ?host=H1,H2&port=P1,P2 (each port stays with its host; a "
        "host without one uses the default port), the form SQLAlchemy passes to libpq."
    )
    return None, None


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
    if TEMPLATE.search(raw or database) or is_template_word(database):
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
