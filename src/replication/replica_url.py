"""`SQLITE_REPLICA_URL`: parsed, checked against what Litestream 0.5 accepts, and masked.

Pure: no I/O. The rules follow Litestream v0.5.17's own parser
(`replica_url.go` `ParseReplicaURLWithQuery`, `cmd/litestream/main.go`
`New*ReplicaClientFromConfig`): the schemes s3, file, gs, abs, sftp, webdav(s), nats
and oss; for s3 the query options below. Litestream silently ignores an option it does
not know (`?endpont=` would send the data to AWS), so an unknown option is an error here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "***"
SCHEMES = ("s3", "file", "gs", "abs", "sftp", "webdav", "webdavs", "nats", "oss")
# Litestream's s3 options (both spellings it accepts), and what each value must be.
_S3_BOOL_OPTIONS = {
    "forcePathStyle",
    "force-path-style",
    "skipVerify",
    "skip-verify",
    "signPayload",
    "sign-payload",
    "requireContentMD5",
    "require-content-md5",
}
_S3_INT_OPTIONS = {"partSize", "part-size", "concurrency"}
_S3_TEXT_OPTIONS = {"endpoint", "region", "storageClass", "storage-class"}
_S3_OPTIONS = _S3_BOOL_OPTIONS | _S3_INT_OPTIONS | _S3_TEXT_OPTIONS
_PLACEHOLDER = re.compile(r"<[^>]*>|\$\{[^}]*\}|\[[A-Z][A-Z _-]*\]|\bYOUR[_-]", re.I)
_MAX_LEN = 2048


@dataclass(frozen=True)
class ReplicaURL:
    """A replica URL split into what Litestream uses.

    `url` is what Litestream receives (credentials removed where they travel as separate
    fields); `username`/`password` came from the URL's userinfo.
    """

    scheme: str
    url: str = field(repr=False)
    host: str
    path: str
    query: tuple[tuple[str, str], ...]
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    masked: str = ""

    def option(self, *names: str) -> str | None:
        for key, value in self.query:
            if key in names:
                return value
        return None


def clean(raw: str) -> str:
    """Surrounding whitespace and one balanced pair of quotes, as pasted into a form."""
    value = raw.strip().lstrip("\ufeff").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"`":
        value = value[1:-1].strip()
    return value


def mask(raw: str) -> str:
    """The URL for display: userinfo replaced by `***`, and so is every query value but
    the known non-secret options' (an endpoint keeps its host, not its userinfo) and
    any fragment. Never raises."""
    value = clean(raw)[:_MAX_LEN]
    match = re.match(r"^([A-Za-z][\w+.-]*://)([^/?#]*)(.*)$", value, re.S)
    if match is None:
        return MASK if value else ""
    scheme, authority, rest = match.groups()
    if "@" not in authority and ":" in authority and "@" in rest:
        # A password with an unencoded `/`, `?` or `#` ends the authority early for a
        # parser; for display the userinfo runs to the `@` (what cannot be told apart
        # from it is masked with it).
        return mask(f"{scheme}{MASK}@{(authority + rest).partition('@')[2]}")
    if "@" in authority:
        user_host = authority.rsplit("@", 1)
        keep = user_host[0].split(":", 1)[0] if scheme.lower().startswith("abs") else MASK
        authority = f"{keep if keep else MASK}@{user_host[1]}"
    rest, hash_mark, fragment = rest.partition("#")
    path, question_mark, query = rest.partition("?")
    if question_mark:
        path += "?" + "&".join(_mask_option(item) for item in query.split("&"))
    if hash_mark:
        path += "#" + (MASK if fragment else "")
    return scheme + authority + path


# Shown as they are: none of them can hold a secret.
_SHOWN_OPTIONS = (_S3_BOOL_OPTIONS | _S3_INT_OPTIONS | _S3_TEXT_OPTIONS) - {"endpoint"}


def _mask_option(item: str) -> str:
    key, equals, value = item.partition("=")
    name = unquote(key)
    if not equals or name in _SHOWN_OPTIONS:
        return item
    if name == "endpoint":
        decoded = unquote(value)
        if "@" not in decoded:
            return item
        host = decoded.rsplit("@", 1)[1]
        prefix = decoded.split("://", 1)[0] + "://" if "://" in decoded else ""
        return f"{key}={prefix}{MASK}@{host}"
    # Anything else may be a credential pasted as an option (access-key-id=…).
    return f"{key}={MASK}"


def parse(raw: str) -> tuple[ReplicaURL | None, list[str]]:
    """Parse and check a replica URL; returns it, or None and error sentences."""
    value = clean(raw)
    shown = mask(value)
    if not value:
        return None, ["SQLITE_REPLICA_URL is empty."]
    if len(value) > _MAX_LEN:
        return None, [f"SQLITE_REPLICA_URL is longer than {_MAX_LEN} characters."]
    if any(c.isspace() or ord(c) < 32 or c in '"\\' for c in value):
        return None, [
            f"SQLITE_REPLICA_URL {shown!r} contains spaces, quotes or control characters; "
            "percent-encode them."
        ]
    match = re.match(r"^(\w+)://", value)
    if match is None:
        return None, [
            f"SQLITE_REPLICA_URL {shown!r} is not a URL; use a Litestream replica URL such as "
            "s3://bucket/path?endpoint=https://… or file:///absolute/dir."
        ]
    scheme = match[1].lower()
    if scheme not in SCHEMES:
        return None, [
            f"SQLITE_REPLICA_URL scheme {match[1]!r} is not a Litestream replica type; "
            f"supported: {', '.join(SCHEMES)}."
        ]
    if _PLACEHOLDER.search(unquote(value)):
        return None, [f"SQLITE_REPLICA_URL {shown!r} still contains a placeholder."]
    value = scheme + value[len(match[1]) :]
    if scheme == "s3" and value[5:].lower().startswith("arn:"):
        return _access_point(value, shown)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        # The parser's words may quote a piece of a password that holds a `/`, `?` or `#`.
        why = (
            "a password with '/', '?', '#' or '@' must be percent-encoded"
            if "@" in value
            else str(exc)
        )
        return None, [f"SQLITE_REPLICA_URL {shown!r} is not a valid URL ({why})."]
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    host = (parts.hostname or "") + (f":{port}" if port is not None else "")
    path = parts.path.strip("/")
    errors = _check(scheme, host, path, query, username, password, value, shown)
    if errors:
        return None, errors
    # nats reads credentials from separate fields only (its config ignores the userinfo).
    url = value
    if scheme == "nats" and parts.username is not None:
        url = f"nats://{parts.netloc.rsplit('@', 1)[1]}{parts.path}"
    return ReplicaURL(scheme, url, host, path, query, username, password, shown), []


def _access_point(value: str, shown: str) -> tuple[ReplicaURL | None, list[str]]:
    arn, _, query_text = value[5:].partition("?")
    query = tuple(parse_qsl(query_text, keep_blank_values=True))
    errors = _check_s3_options(query, shown)
    if errors:
        return None, errors
    return ReplicaURL("s3", value, arn, "", query, masked=shown), []


def _check(
    scheme: str,
    host: str,
    path: str,
    query: tuple[tuple[str, str], ...],
    username: str | None,
    password: str | None,
    value: str,
    shown: str,
) -> list[str]:
    if scheme == "file":
        if not value.startswith("file:///") or host:
            return [
                f"SQLITE_REPLICA_URL {shown!r}: a file replica is file:///absolute/dir "
                "(three slashes)."
            ]
        if not path:
            return [f"SQLITE_REPLICA_URL {shown!r}: the file replica needs a directory."]
        return _no_query(query, shown)
    errors: list[str] = []
    needs_host = {
        "s3": "a bucket",
        "gs": "a bucket",
        "abs": "a container",
        "oss": "a bucket",
        "sftp": "a host",
        "webdav": "a host",
        "webdavs": "a host",
        "nats": "a server",
    }
    if not host:
        errors.append(f"SQLITE_REPLICA_URL {shown!r} needs {needs_host[scheme]} after {scheme}://.")
    if scheme in {"s3", "gs", "oss"} and username is not None:
        errors.append(
            f"SQLITE_REPLICA_URL {shown!r}: {scheme} credentials do not go in the URL "
            "(Litestream ignores them there); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
        )
    if scheme == "abs" and not username:
        errors.append(
            f"SQLITE_REPLICA_URL {shown!r}: an Azure replica is abs://ACCOUNT@container/path."
        )
    if scheme == "sftp" and not username:
        errors.append(f"SQLITE_REPLICA_URL {shown!r}: an SFTP replica is sftp://user@host/path.")
    if scheme == "nats" and not path:
        errors.append(f"SQLITE_REPLICA_URL {shown!r}: a NATS replica is nats://server/bucket.")
    if scheme == "s3":
        errors.extend(_check_s3_options(query, shown))
    else:
        errors.extend(_no_query(query, shown))
    return errors


def _check_s3_options(query: tuple[tuple[str, str], ...], shown: str) -> list[str]:
    errors: list[str] = []
    for key, value in query:
        if key not in _S3_OPTIONS:
            known = "endpoint, region, forcePathStyle, skipVerify, signPayload, storageClass"
            errors.append(
                f"SQLITE_REPLICA_URL option {key!r} is not one Litestream knows "
                f"(it would be ignored); known: {known}."
            )
        elif key in _S3_BOOL_OPTIONS and value not in {"true", "false"}:
            errors.append(f"SQLITE_REPLICA_URL option {key}={value!r} must be true or false.")
        elif key in _S3_INT_OPTIONS and not value.isdigit():
            errors.append(f"SQLITE_REPLICA_URL option {key}={value!r} must be a whole number.")
        elif key == "endpoint":
            errors.extend(_check_endpoint(value))
    return errors


def _check_endpoint(value: str) -> list[str]:
    target = value if "://" in value else "https://" + value
    try:
        parts = urlsplit(target)
        _ = parts.port
    except ValueError as exc:
        return [f"SQLITE_REPLICA_URL endpoint {mask(target)!r} is not valid ({exc})."]
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return [f"SQLITE_REPLICA_URL endpoint {mask(target)!r} must be http(s)://host[:port]."]
    if parts.username is not None:
        return ["SQLITE_REPLICA_URL endpoint must not contain credentials."]
    return []


def _no_query(query: tuple[tuple[str, str], ...], shown: str) -> list[str]:
    if not query:
        return []
    return [
        f"SQLITE_REPLICA_URL {shown!r}: this replica type takes no ?options "
        "(Litestream would ignore them)."
    ]


def with_option(url: str, key: str, value: str) -> str:
    """`url` with `?key=value` added."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{key}={quote(value, safe=':/')}"


def beside(raw: str, suffix: str) -> str:
    """The replica URL of a file kept beside the configured one: its path with `suffix`
    appended (`s3://b/todo` → `s3://b/todo<suffix>`), or a first path segment named by it
    where the URL has no path (`s3://b` → `s3://b/todo<suffix>`: the bucket, host or
    access point stays the same). Query and credentials are kept."""
    value = clean(raw)
    base, mark, query = value.partition("?")
    match = re.match(r"^(\w+://[^/]*)(/.*)?$", base, re.S)
    if match is None:
        return value
    authority, path = match[1], (match[2] or "").rstrip("/")
    access_point = base.lower().startswith("s3://arn:")
    if not path or (access_point and path.count("/") < 2):
        path += f"/todo{suffix}"  # the access point's name is the path's first segment
    else:
        path += suffix
    return f"{authority}{path}{mark}{query}"
