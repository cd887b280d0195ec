"""http(s) URLs read as a browser (and Better Auth) reads them: their origin, or what is
wrong with them.

Shared by the settings, which warn about a URL setting that is not one, and by the token
checks (src.auth.issuer), which ignore it: both ask the same function, so a URL is never
used while a warning says it is ignored, or the other way round.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def cleaned(raw: str | None) -> str | None:
    """A pasted value without surrounding whitespace or quotes; None when nothing is left."""
    value = (raw or "").strip().strip("'\"").strip()
    return value or None


def _split(url: str) -> tuple[SplitResult | None, int | None, str | None]:
    """The parts, the explicit port and what is wrong (None: an absolute http(s) URL).
    The reasons never quote the value: it may be a secret pasted into the wrong variable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # urlsplit names the bad port or bracket, but the value cannot be shown.
        return None, None, "it is not a well-formed URL (check the host and the port)"
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        return None, None, "it does not start with http:// or https://"
    if not parts.hostname:
        return None, None, "it has no host name after the scheme"
    return parts, port, None


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` as a browser (and Better Auth) writes it: lower case, no
    default port, no path. None when `url` is not an absolute http(s) URL."""
    parts, port, _ = _split(url)
    if parts is None or parts.hostname is None:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def url_setting_problem(name: str, raw: str | None, example: str) -> str | None:
    """A sentence for the setting `name` whose value `raw` is not an absolute http(s) URL
    (`"BETTER_AUTH_URL is not an http(s) URL such as …: it does not start with http:// or
    https://; it is ignored."`); None when it is one, or is unset. Never quotes `raw`."""
    value = cleaned(raw)
    if value is None:
        return None
    problem = _split(value)[2]
    if problem is None:
        return None
    return f"{name} is not an http(s) URL such as {example}: {problem}; it is ignored."
