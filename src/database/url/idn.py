"""Internationalised host names (`bücher-db.example.de`): their IDNA form for the driver.

DNS only carries ASCII; libpq and PyMySQL pass a non-ASCII name to the resolver as
UTF-8, which fails or resolves something else. The name is converted the way
browsers do (UTS #46 mapping, then IDNA 2008, by the `idna` package:
https://github.com/kjd/idna), so `Bücher-DB.example.de` becomes
`xn--bcher-db-65a.example.de`.
"""

from __future__ import annotations

import idna

# RFC 1035's limit on a whole name; also bounds the work done on garbage.
_MAX_HOST_LENGTH = 253


def idna_host(name: str) -> str | None:
    """The ASCII (punycode) form of a non-ASCII host name, or None if it is not a
    valid internationalised domain name (e.g. an emoji, an `_`, an empty label)."""
    if not name or len(name) > _MAX_HOST_LENGTH:
        return None
    try:
        encoded = idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None
    return encoded if len(encoded) <= _MAX_HOST_LENGTH else None


def idna_error(source: str) -> str:
    """The sentence for a non-ASCII host name that IDNA cannot encode."""
    return (
        f"The host name in {source} contains non-ASCII characters but is not a valid "
        "internationalised domain name (IDNA); check it for a typo or an unencoded "
        "character from the password, or write it in its xn-- form."
    )
