"""Hosts and ports after the `@`: one host, or libpq's failover list `h1:p1,h2:p2`.

SQLAlchemy hands the host to the driver undecoded and without checks, so a stray
character from an unencoded password lands in a DNS lookup. Every element is
checked here; non-ASCII names become their IDNA form (`idn`). How a list is handed
to the driver is `server`'s business: this module only reads it, with libpq's
meaning (https://www.postgresql.org/docs/current/libpq-connect.html, "Specifying
Multiple Hosts"): each port belongs to the host it follows, a host without one
uses the default port.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from src.config.settings import LIBPQ_SOURCE
from src.database.url.cleaning import TEMPLATE
from src.database.url.idn import idna_error, idna_host
from src.database.url.placeholders import is_template_word
from src.database.url.scheme import Backend

_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+(?:%(?:25)?[A-Za-z0-9._~-]+)?)\]")
# libpq reads a host starting with an encoded `/` as a socket directory.
SOCKET_HOST = re.compile(r"(%2[Ff][^:,/?@]*)(?::(\d+))?")
_HOST_ELEMENT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::(.*))?")
_PORT_PLACEHOLDER = re.compile(r"\w*port\w*", re.I)
_ZONE = re.compile(r"%(?:25)?[A-Za-z0-9._~-]+\Z")
# A URL built from libpq's variables: each part is named by the variable it came from.
_LIBPQ_VARIABLES = {"host name": "PGHOST", "port": "PGPORT"}


def part_named(part: str, source: str) -> str:
    """How a sentence names a part of the URL: "The port in DATABASE_URL", or "PGPORT"
    when the URL was built from the PG* variables (the operator never wrote a URL)."""
    if source == LIBPQ_SOURCE and part in _LIBPQ_VARIABLES:
        return _LIBPQ_VARIABLES[part]
    return f"The {part} in {source}"


@dataclass(frozen=True)
class HostList:
    """The hosts after the `@`, in order, each with its own port (None: the default)."""

    hosts: tuple[str, ...]
    ports: tuple[int | None, ...]


def plausible_hostport(hostport: str, backend: Backend) -> bool:
    """Whether a non-empty text reads as host[:port], or a PostgreSQL host list."""
    if backend == "postgresql" and SOCKET_HOST.fullmatch(hostport):
        return True
    elements = hostport.split(",")
    if len(elements) > 1 and backend != "postgresql":
        return False
    for element in elements:
        match = _HOST_ELEMENT.fullmatch(element)
        if match is None or not _plausible_name(match[1]):
            return False
        if match[2] is not None and not match[2].isdigit():
            return False
    return True


def _plausible_name(name: str) -> bool:
    if _HOST_NAME.fullmatch(name) or _IPV6.fullmatch(name):
        return True
    return not name.isascii() and idna_host(name) is not None


def host_list(
    hostport: str, backend: Backend, source: str, repairs: list[str], errors: list[str]
) -> HostList | None:
    """The hosts and ports after the `@`; None when there are none or after an error."""
    if not hostport:
        return None
    if TEMPLATE.search(hostport):
        errors.append(_placeholder(source))
        return None
    elements = hostport.split(",")
    if len(elements) > 1 and backend != "postgresql":
        errors.append(f"{source} lists several hosts; MySQL URLs take exactly one host.")
        return None
    hosts: list[str] = []
    ports: list[int | None] = []
    failed = False
    for element in elements:
        read = _host_element(element, backend, source, repairs, errors)
        if read is None:
            failed = True
            continue
        hosts.append(read[0])
        ports.append(read[1])
    return None if failed else HostList(tuple(hosts), tuple(ports))


def _placeholder(source: str) -> str:
    return (
        f"The host or port in {source} is still a template placeholder (like HOST:PORT or "
        "<host>); replace it with the real host name and port number."
    )


def _host_element(
    element: str, backend: Backend, source: str, repairs: list[str], errors: list[str]
) -> tuple[str, int | None] | None:
    if element.count(":") >= 2 and "[" not in element:
        scheme, default = ("postgresql", 5432) if backend == "postgresql" else ("mysql", 3306)
        if _ipv6_literal(element):
            errors.append(
                f"The IPv6 address in {source} must be in brackets, e.g. "
                f"{scheme}://USER:PASSWORD@[2001:db8::1]:{default}/DBNAME."
            )
            return None
        extra = element.split(":")[1:]
        if all(p.isascii() and p.isdigit() for p in extra):
            several = (
                "; for several servers, separate host:port pairs with commas "
                "(HOST1:5432,HOST2:5433)"
                if backend == "postgresql"
                else ""
            )
            errors.append(
                f"{source} gives one host {len(extra)} ports (host:port:port); a host takes "
                f"one port, e.g. HOST:{default}{several}."
            )
            return None
        # Otherwise the text after the first ':' is a port that is not a number.
    match = _HOST_ELEMENT.fullmatch(element)
    name, raw_port = (match[1], match[2]) if match else (None, None)
    if raw_port is not None and _PORT_PLACEHOLDER.fullmatch(raw_port):
        errors.append(_placeholder(source))
        return None
    host = _host_name(name, source, repairs, errors)
    if host is None:
        return None
    if raw_port is None:
        return host, None
    port = _port_number(raw_port, source, errors)
    return (host, port) if port is not None else None


def _ipv6_literal(text: str) -> bool:
    try:
        ipaddress.IPv6Address(_ZONE.sub("", text))
    except ValueError:
        return False
    return True


def _host_name(name: str | None, source: str, repairs: list[str], errors: list[str]) -> str | None:
    if name == "":
        errors.append(f"{source} has an empty host name in its host list.")
        return None
    ipv6 = _IPV6.fullmatch(name) if name else None
    if ipv6:
        return ipv6[1].replace("%25", "%")
    if name is not None and not name.isascii():
        encoded = idna_host(name)
        if encoded is None:
            errors.append(idna_error(source))
            return None
        repairs.append(
            "Converted the internationalised host name to its IDNA (xn--…) form, the one "
            "DNS resolves."
        )
        return encoded
    if name is None or not _HOST_NAME.fullmatch(name):
        errors.append(
            f"{part_named('host name', source)} contains characters that cannot be in a host name "
            "(only letters, digits, '.', '-' and '_'); check for a stray space, quote or "
            "an unencoded character from the password."
        )
        return None
    if is_template_word(name):
        errors.append(
            f"{part_named('host name', source)} is still a template placeholder; replace it with "
            "the real host name."
        )
        return None
    return name


def _port_number(port: str, source: str, errors: list[str]) -> int | None:
    if not port:
        errors.append(f"{source} has a ':' after the host but no port number; add it or drop ':'.")
    elif not (port.isascii() and port.isdigit()):
        errors.append(f"{part_named('port', source)} is not a number; use e.g. 5432 or 3306.")
    elif not 1 <= int(port) <= 65535:
        errors.append(f"{part_named('port', source)} must be between 1 and 65535.")
    else:
        return int(port)
    return None


def missing_host(source: str) -> str:
    """The error for a MySQL URL with neither a host after the `@` nor a socket option."""
    return f"{source} has no host; put it after the '@' (mysql://USER:PASSWORD@HOST:3306/DBNAME)."
