"""Hosts given as options: libpq's `?host=`/`?hostaddr=`/`?port=`, MySQL's `?unix_socket=`.

They stand in for the host after the `@` (a Unix socket directory cannot be written
there), and SQLAlchemy lets the two silently override one another, so they are
checked against each other here.
"""

from __future__ import annotations

import re

from src.config.settings import LIBPQ_SOURCE
from src.database.url.idn import idna_error, idna_host
from src.database.url.options import Options, is_int
from src.database.url.placeholders import is_template_word
from src.database.url.scheme import Backend

# One element of ?host=: a socket directory, a host name or an unbracketed IPv6 address.
_QUERY_HOST = re.compile(
    r"/[^\x00-\x1f]*|[A-Za-z0-9._-]+|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
)
_QUERY_HOST_PORT = re.compile(r"[A-Za-z0-9._-]+:(\d{1,5})")
# One value of a repeated ?host=: a name (or [IPv6], or socket path) with an optional port.
_REPEATED_HOST = re.compile(r"(?:\[([0-9A-Fa-f:.%]+)\]|([^:,\[\]]+))(?::(\d{1,5}))?")


def _host_option_keys(backend: Backend) -> tuple[str, ...]:
    """Options that stand in for the host after the `@` (a socket, for MySQL)."""
    return ("host", "hostaddr") if backend == "postgresql" else ("unix_socket",)


def host_in_query(query: str | None, backend: Backend) -> bool:
    """Whether the raw query text gives a non-empty host option."""
    keys = _host_option_keys(backend)
    pieces = (query or "").split("&")
    return any(p.partition("=")[0] in keys and p.partition("=")[2] for p in pieces)


def host_given_as_option(opts: Options, backend: Backend) -> bool:
    """Whether the vetted options give a host, so none is needed after the `@`."""
    return any(opts.query.get(k) for k in _host_option_keys(backend))


def check_query_hosts(opts: Options, source: str, *, netloc_host: bool, netloc_port: bool) -> None:
    """libpq's ?host= and ?port=, alone and against the host and port after the `@`.

    Non-ASCII host names in ?host= are replaced by their IDNA form (a repair).
    """
    host = opts.query.get("host")
    port = opts.query.get("port")
    hosts = host.split(",") if host is not None else []
    if host is not None and netloc_host:
        # SQLAlchemy silently ignores the first host when both are given.
        opts.errors.append(
            f"{source} names a host both before the database and in ?host=; keep only one."
        )
    if any(not h.startswith("/") and not h.isascii() for h in hosts):
        hosts = _idna_hosts(opts, hosts, source)
        if hosts:
            opts.query["host"] = ",".join(hosts)
    host_ports = [m[1] for h in hosts if (m := _QUERY_HOST_PORT.fullmatch(h))]
    if any(not (_QUERY_HOST.fullmatch(h) or _QUERY_HOST_PORT.fullmatch(h)) for h in hosts):
        opts.errors.append(
            f"The option 'host' in {source} must be host names, IP addresses or a socket "
            "directory (an absolute path), separated by commas."
        )
    elif any(is_template_word(h) for h in hosts):
        opts.errors.append(
            f"The option 'host' in {source} is still a template placeholder; replace it with "
            "the real host name."
        )
    elif host_ports and (len(hosts) > 1 or port is not None or netloc_port):
        # SQLAlchemy only understands HOST:PORT in ?host= for a single host.
        opts.errors.append(
            f"The option 'host' in {source} carries a port; write ?host=H1,H2&port=P1,P2 "
            "instead, with no port anywhere else."
        )
    elif host_ports and not is_int(host_ports[0], 1, 65535):
        opts.errors.append(f"The port in the option 'host' in {source} must be 1 to 65535.")
    if port is not None:
        _check_ports(opts, port, len(hosts), source, netloc_port=netloc_port)


def join_repeated_hosts(
    pairs: list[tuple[str, str]], opts: Options, source: str
) -> list[tuple[str, str]]:
    """SQLAlchemy's own multi-host spelling, `?host=H1:P1&host=H2:P2`, as the one libpq
    keyword pair `host=H1,H2` and `port=P1,P2` (each port stays with its host)."""
    given = [value for key, value in pairs if key == "host"]
    if len(given) < 2:
        return pairs
    hosts: list[str] = []
    ports: list[str] = []
    for value in given:
        match = _REPEATED_HOST.fullmatch(value)
        if match is None:
            opts.errors.append(
                f"The repeated option 'host' in {source} must each be one HOST or HOST:PORT "
                "(IPv6 in brackets); or write ?host=H1,H2&port=P1,P2."
            )
            return [(k, v) for k, v in pairs if k != "host"]
        hosts.append(match[1] or match[2])
        ports.append(match[3] or "")
    rest = [(k, v) for k, v in pairs if k != "host"]
    joined = [("host", ",".join(hosts))]
    if any(ports):
        if any(k == "port" for k, _ in rest):
            opts.errors.append(
                f"{source} gives ports both in the repeated option 'host' and in ?port=; "
                "keep only one."
            )
            return rest
        joined.append(("port", ",".join(ports)))
    opts.repairs.append(
        "Joined the repeated option 'host' into ?host=H1,H2&port=P1,P2, the form libpq reads."
    )
    return joined + rest


def _idna_hosts(opts: Options, hosts: list[str], source: str) -> list[str]:
    converted: list[str] = []
    for name in hosts:
        if name.startswith("/") or name.isascii():
            converted.append(name)
            continue
        encoded = idna_host(name)
        if encoded is None:
            opts.errors.append(idna_error(source))
            return []
        converted.append(encoded)
    opts.repairs.append(
        "Converted the internationalised host name in ?host= to its IDNA (xn--…) form, the "
        "one DNS resolves."
    )
    return converted


def _check_ports(
    opts: Options, port: str, host_count: int, source: str, *, netloc_port: bool
) -> None:
    if netloc_port:
        opts.errors.append(
            f"{source} gives a port both after the host and in ?port=; keep only one."
        )
    ports = port.split(",")
    # In a list, libpq reads an empty entry as "the default port" for that host.
    if not all(is_int(p, 1, 65535) or (len(ports) > 1 and not p) for p in ports):
        opts.errors.append(
            f"{_port_option(source)} must be port numbers from 1 to 65535, separated by commas."
        )
    elif len(ports) > 1 and len(ports) != max(host_count, 1):
        opts.errors.append(
            f"{source} lists {max(host_count, 1)} host(s) but {len(ports)} ports; give one "
            "port, or one per host in the same order."
        )
    elif len(ports) == 1 and host_count > 1:
        # libpq uses a single port for every host; SQLAlchemy insists on one per host.
        opts.query["port"] = ",".join(ports * host_count)
        opts.repairs.append("Repeated the single ?port= for each host in ?host=.")


def _port_option(source: str) -> str:
    # With a socket directory in PGHOST, PGPORT travels as ?port=: name the variable.
    return "PGPORT" if source == LIBPQ_SOURCE else f"The option 'port' in {source}"
