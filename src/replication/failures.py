"""Why a replica could not be read, as a code and a sentence an operator can act on.

The markers are what Litestream 0.5.17 prints (measured against moto_server and a file
replica, see tests/test_replication_restore.py): `NoSuchBucket`, `InvalidAccessKeyId`,
`SignatureDoesNotMatch`, `AccessDenied`, Go's `connection refused` / `no such host` /
`x509` texts. A refused or silent endpoint prints nothing before the deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from src.core.redaction import redactor

_MAX_REASON = 300
# (code, pattern, sentence) in priority order.
_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (code, re.compile(pattern, re.I), sentence)
    for code, pattern, sentence in (
        ("no_bucket", r"NoSuchBucket|bucket does not exist", "the bucket does not exist"),
        (
            "bad_key_id",
            r"InvalidAccessKeyId|InvalidClientTokenId",
            "the storage service does not know the access key id (check AWS_ACCESS_KEY_ID)",
        ),
        (
            "bad_secret",
            r"SignatureDoesNotMatch",
            "the secret key does not match the access key id (check AWS_SECRET_ACCESS_KEY)",
        ),
        (
            "access_denied",
            r"AccessDenied|StatusCode: 403|permission denied",
            "access denied: these credentials may not read the replica",
        ),
        ("refused", r"connection refused", "the endpoint refused the connection"),
        ("dns", r"no such host|server misbehaving", "the endpoint's host name does not resolve"),
        ("tls", r"x509|certificate|tls:", "the TLS connection to the endpoint failed"),
        ("unreachable", r"network is unreachable|no route to host", "the endpoint is unreachable"),
    )
)


@dataclass(frozen=True)
class Failure:
    code: str
    reason: str


def sanitize(text: str) -> str:
    """One line, no request ids, no secret, bounded length."""
    line = " ".join(text.split())
    line = re.sub(r",?\s*(RequestID|HostID): [^,]*", "", line)
    line = re.sub(r"^Error:\s*", "", line)
    line = redactor.redact(line)
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def classify(text: str) -> Failure:
    """A failure from Litestream's own error text."""
    detail = sanitize(text)
    for code, pattern, sentence in _RULES:
        if pattern.search(text):
            return Failure(code, f"{sentence} ({detail})" if detail else sentence)
    return Failure("other", detail or "Litestream failed without saying why")


def timed_out(seconds: float, what: str) -> Failure:
    return Failure(
        "timeout",
        f"no answer from the replica within {seconds:g} s while {what} "
        "(an endpoint that accepts connections but never replies, or a very slow network)",
    )


def last_error_line(output: str) -> str:
    """The most telling line of a failed command's output."""
    lines = [line for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error:") or '"level":"ERROR"' in line:
            return line
    return lines[-1] if lines else ""
