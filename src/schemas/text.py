"""Text rules shared by request bodies and path parameters.

Whitespace is Unicode's White_Space property, spelled out: `\\s` means something slightly
different in Python's `re` (it adds U+001C to U+001F), in JavaScript, which the OpenAPI
document's patterns are read as (it adds U+FEFF and drops U+0085), and in the Rust regex
engine that validates requests (White_Space exactly). A pattern that the server and
every client read alike can only use the explicit class.
"""

from __future__ import annotations

WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
# The same characters as the inside of a regex character class.
WHITESPACE_CLASS = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
