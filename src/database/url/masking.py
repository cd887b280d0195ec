"""What must never be shown: user names, passwords and secret options.

Wherever a database URL is shown (the status API, `doctor`, an engine's repr) it
is masked here, and the log redactor is given the secrets to scrub, including
those of a rejected value: a broken URL is when someone is most likely to print it.
"""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy.engine import URL

from src.database.url.libpq import EXTRA_SECRET_KEYWORDS, libpq_keywords
from src.database.url.parts import decode


def is_secret_option(key: str) -> bool:
    """Whether an option's value must be masked and redacted."""
    lowered = key.lower()
    return (
        lowered in libpq_keywords()[1]
        or lowered in EXTRA_SECRET_KEYWORDS
        or "password" in lowered
        or "secret" in lowered
    )


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
                shown = "***" if is_secret_option(key) else quote(value, safe="/:,")
                pairs.append(f"{quote(key)}={shown}")
        text += "?" + "&".join(pairs)
    return text


def server_hosts(url: URL) -> tuple[tuple[str, int | None], ...]:
    """Where a server URL points: (host or socket directory, port or None), in the
    order the driver tries them; () for libpq's default socket (or SQLite).

    Reads both spellings the resolver produces: `@h1,h2:port` and `?host=…&port=…`.
    """
    host_option = url.query.get("host")
    if isinstance(host_option, str) and host_option:
        hosts = host_option.split(",")
        port_option = url.query.get("port")
        ports = port_option.split(",") if isinstance(port_option, str) else []
        if len(ports) == 1:
            ports *= len(hosts)
        ports += [""] * (len(hosts) - len(ports))
        return tuple(
            (h, int(p) if p.isdigit() else None) for h, p in zip(hosts, ports, strict=False)
        )
    if not url.host:
        return ()
    return tuple((h, url.port) for h in url.host.split(","))


def describe_server(url: URL) -> str:
    """A short, credential-free phrase for where a server URL connects, e.g.
    `h1:5432, h2:5432`, `the Unix socket in /var/run/postgresql`, `the local Unix socket`."""
    shown = []
    for host, port in server_hosts(url):
        if host.startswith("/"):
            shown.append(f"the Unix socket in {host}")
        else:
            name = f"[{host}]" if ":" in host else host
            shown.append(f"{name}:{port}" if port is not None else name)
    return ", ".join(shown) if shown else "the local Unix socket"


class RedactedURL(URL):
    """A URL whose repr/str hides the user name too, so logging an engine is safe.

    `render_as_string(hide_password=False)` still gives the real URL.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return mask_url(self)


def credential_pieces(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Whatever in a rejected value might be a secret, and what might be a user name,
    each as written and decoded."""
    _, sep, rest = text.partition("://")
    if not sep:
        # Not a URL at all: it may well be a password pasted into the wrong field.
        return (text,), ()
    pieces: list[str] = []
    users: list[str] = []
    if "@" in rest:
        userinfo = rest[: rest.rindex("@")]
        user, colon, password = userinfo.partition(":")
        pieces += [userinfo, password] if colon else [userinfo]
        users.append(user)
    for option in rest.rpartition("?")[2].split("&"):
        key, _, value = option.partition("=")
        if is_secret_option(key):
            pieces.append(value)
        elif key.lower() in ("user", "username"):
            users.append(value)
    pieces += [d for d in map(decode, pieces) if d is not None]
    users += [d for d in map(decode, users) if d is not None]
    return tuple(dict.fromkeys(p for p in pieces if p)), tuple(dict.fromkeys(u for u in users if u))
