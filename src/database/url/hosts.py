"""Hosts and ports: after the `@`, and in libpq's `?host=` and `?port=` options.

SQLAlchemy hands the host to the driver undecoded and without checks, so a stray
character from an unencoded password lands in a DNS lookup. Everything is checked
here, and the shapes SQLAlchemy cannot express (a port per host) are rejected with
the spelling that works.
"""

from __future__ import annotations

import re

from src.database.url.cleaning import TEMPLATE
from src.database.url.options import Options, is_int
from src.database.url.scheme import EXAMPLE_URL, Backend

_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+(?:%(?:25)?[A-Za-z0-9._~-]+)?)\]")
# libpq reads a host starting with an encoded `/` as a socket directory.
SOCKET_HOST = re.compile(r"(%2[Ff][^:,/?@]*)(?::(\d+))?")
_HOST_ELEMENT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::(.*))?")


def _host_option_keys(backend: Backend) -> tuple[str, ...]:
    """Options that stand in for the host after the `@` (a socket, for MySQL)."""
    return ("host", "hostaddr") if backend == "postgresql" else ("unix_socket",)


def plausible_hostport(hostport: str, backend: Backend) -> bool:
    """Whether a non-empty text reads as host[:port], or a PostgreSQL host list."""
    if backend == "postgresql" and SOCKET_HOST.fullmatch(hostport):
        return True
    elements = hostport.split(",")
    if len(elements) > 1 and backend != "postgresql":
        return False
    for element in elements:
        match = _HOST_ELEMENT.fullmatch(element)
        if match is None or not (_HOST_NAME.fullmatch(match[1]) or _IPV6.fullmatch(match[1])):
            return False
        if match[2] is not None and not match[2].isdigit():
            return False
    return True


def host_in_query(query: str | None, backend: Backend) -> bool:
    """Whether the raw query text gives a non-empty host option."""
    keys = _host_option_keys(backend)
    pieces = (query or "").split("&")
    return any(p.partition("=")[0] in keys and p.partition("=")[2] for p in pieces)


def host_given_as_option(opts: Options, backend: Backend) -> bool:
    """Whether the vetted options give a host, so none is needed after the `@`."""
    return any(opts.query.get(k) for k in _host_option_keys(backend))


def host_port(
    hostport: str, backend: Backend, source: str, errors: list[str]
) -> tuple[str | None, int | None]:
    """The host (comma-joined for a list) and port, or (None, None) after an error."""
    if not hostport:
        return None, None
    if TEMPLATE.search(hostport) or re.search(r":\w*port\w*$", hostport, re.I):
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


# One element of ?host=: a socket directory, a host name or an unbracketed IPv6 address.
_QUERY_HOST = re.compile(
    r"/[^\x00-\x1f]*|[A-Za-z0-9._-]+|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
)
_QUERY_HOST_PORT = re.compile(r"[A-Za-z0-9._-]+:(\d{1,5})")


def check_query_hosts(opts: Options, source: str, *, netloc_host: bool, netloc_port: bool) -> None:
    """libpq's ?host= and ?port=, alone and against the host and port after the `@`."""
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
    elif host_ports and not is_int(host_ports[0], 1, 65535):
        opts.errors.append(f"The port in the option 'host' in {source} must be 1 to 65535.")
    if port is None:
        return
    if netloc_port:
        opts.errors.append(
            f"{source} gives a port both after the host and in ?port=; keep only one."
        )
    ports = port.split(",")
    if not all(is_int(p, 1, 65535) for p in ports):
        opts.errors.append(
            f"The option 'port' in {source} must be port numbers from 1 to 65535, "
            "separated by commas."
        )
    elif len(ports) > 1 and len(ports) != max(len(hosts), 1):
        opts.errors.append(
            f"{source} lists {max(len(hosts), 1)} host(s) but {len(ports)} ports; give one "
            "port, or one per host in the same order."
        )


def missing_host(backend: Backend, source: str) -> str:
    """The error for a URL with neither a host after the `@` nor one as an option."""
    if backend == "postgresql":
        return (
            f"{source} has no host; put it after the '@' ({EXAMPLE_URL}), or for a Unix "
            "socket use postgresql:///DBNAME?host=/var/run/postgresql."
        )
    return f"{source} has no host; put it after the '@' (mysql://USER:PASSWORD@HOST:3306/DBNAME)."
