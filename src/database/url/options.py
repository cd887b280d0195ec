"""The `?key=value` part of a URL: parsing, and what every backend's checks share.

Options become driver keyword arguments, so an unknown or misspelt one only fails
at connect time, deep inside the driver. Checking them up front (per backend, in
`postgresql_options` and `mysql_options`) turns that into a sentence before any
engine exists. TLS options are never guessed or dropped: a value we cannot
translate exactly is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

# A name we may quote back in a message; anything else could be a pasted secret.
_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

# How an `ssl=`-style flag must say yes for us to translate it; anything else is not guessed.
TRUE_WORDS = frozenset({"true", "1"})


@dataclass
class Options:
    """What the query string contributes to the final URL."""

    query: dict[str, str] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Credentials and database given as options (JDBC style), moved into the URL.
    user: str | None = None
    password: str | None = None
    dbname: str | None = None
    mysql_ssl_mode: str | None = None


def name_of(key: str) -> str:
    """An option name fit for a message, or a neutral phrase if it might be data."""
    if _OPTION_NAME.fullmatch(key):
        return f"'{key}'"
    return "with an unusual name"


def parse_query(
    text: str, source: str, *, repeatable: frozenset[str] = frozenset()
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Split `k=v&…` into pairs, decoding like libpq does (a `+` stays a `+`).

    Returns (pairs, repairs, errors). Exact duplicates are merged; a key repeated
    with different values is an error because drivers would receive a tuple,
    unless it is in `repeatable` (then every pair is kept, for the caller to join).
    """
    pairs: list[tuple[str, str]] = []
    repairs: list[str] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for piece in text.split("&"):
        if not piece:
            continue
        raw_key, _, raw_value = piece.partition("=")
        try:
            key = unquote(raw_key, errors="strict")
            value = unquote(raw_value, errors="strict")
        except UnicodeDecodeError:
            errors.append(
                f"An option in {source} has a %-escape that is not valid UTF-8; "
                "fix its percent-encoding."
            )
            continue
        if not _OPTION_NAME.fullmatch(key):
            errors.append(
                f"{source} has an option with an invalid name after '?' or '&'; "
                "options look like ?sslmode=require&connect_timeout=10."
            )
            continue
        if key in seen and key not in repeatable:
            if seen[key] == value:
                repairs.append(f"Removed a repeated option {name_of(key)}.")
            else:
                errors.append(
                    f"The option {name_of(key)} appears more than once in {source} "
                    "with different values; keep only one."
                )
            continue
        seen[key] = value
        pairs.append((key, value))
    return pairs, repairs, errors


def is_int(value: str, low: int, high: int) -> bool:
    """Whether `value` is plain ASCII digits (no sign, no spaces) within [low, high]."""
    return value.isascii() and value.isdigit() and low <= int(value) <= high


def take_credential(opts: Options, key: str, value: str) -> None:
    """Keep `user`/`password`/`dbname` options aside, to be moved into the URL itself."""
    if not value:
        opts.repairs.append(f"Ignored the empty option '{key}'.")
        return
    previous = getattr(opts, key)
    if previous is not None and previous != value:
        # Spelled twice (e.g. `user=` and `User=`) with different values: which one the
        # driver would use is a guess, so neither is.
        opts.errors.append(f"The option '{key}' is given twice with different values; keep one.")
        return
    setattr(opts, key, value)
