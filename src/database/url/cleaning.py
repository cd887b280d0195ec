"""What pasting does to a value: the layer before any parsing.

Values arrive from `.env` files, dashboards, chat and shell history, so they come
wrapped in quotes (typographic ones too), behind `export NAME=` or `psql`, with
invisible characters at the edges, or as unexpanded `${VARIABLES}`. Whatever can
be undone without guessing is, and reported as a repair.
"""

from __future__ import annotations

import re
import unicodedata

from src.database.url.scheme import EXAMPLE_URL

# Values that mean "not set" when a tool writes an unset variable out as text.
MISSING_WORDS = frozenset({"", "none", "null", "undefined"})
# The damage nests (export X="…"), but never deeply; the bound guarantees an end.
_MAX_CLEAN_PASSES = 8

_INVISIBLE = frozenset("\ufeff\u200b\u200c\u200d\u2060\u180e")
_NBSP = frozenset("\u00a0\u2007\u202f")
# Straight, back and typographic quotes (as word processors and chat apps paste them).
_QUOTE_PAIRS = {
    '"': '"',
    "'": "'",
    "`": "`",
    "\u201c": "\u201d",
    "\u2018": "\u2019",
    "\u201e": "\u201c",
}
QUOTES = frozenset(_QUOTE_PAIRS) | frozenset(_QUOTE_PAIRS.values())
_PREFIXES = (("psql", re.compile(r"psql\s+", re.I)), ("export", re.compile(r"export\s+", re.I)))
_JDBC = re.compile(r"jdbc:", re.I)
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63})\s*=\s*")
# What may follow `NAME=` for it to be an assignment we can drop.
_QUOTE_CLASS = "".join(sorted(QUOTES))
_URLISH = re.compile(
    rf"[\s{_QUOTE_CLASS}]*(?:(?:jdbc:)?[A-Za-z][\w+.-]*://|[\s{_QUOTE_CLASS}]*$)", re.I
)

_VARIABLE = re.compile(r"\$\{[^}]*\}?|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%|\{\{.*\}\}")
# A placeholder left inside one part of the URL (user, host, database name).
TEMPLATE = re.compile(r"<[^<>]*>|\[[A-Za-z][A-Za-z0-9 _-]*\]|\$\{|\$[A-Za-z_]")


def clean(text: str, source: str) -> tuple[str, list[str]]:
    """Undo the usual copy-paste damage, repeatedly, since it nests (export X="…")."""
    repairs: list[str] = []
    for _ in range(_MAX_CLEAN_PASSES):
        before = text
        text = _strip_edges(text, repairs)
        text = _strip_quotes(text, repairs)
        text = _strip_prefix(text, source, repairs)
        if text == before:
            break
    return text, repairs


def _strip_edges(text: str, repairs: list[str]) -> str:
    def strippable(ch: str) -> bool:
        return ch.isspace() or ch in _INVISIBLE

    start, end = 0, len(text)
    while start < end and strippable(text[start]):
        start += 1
    while end > start and strippable(text[end - 1]):
        end -= 1
    removed = text[:start] + text[end:]
    if "\ufeff" in removed:
        repairs.append("Removed a byte-order mark (U+FEFF) from the value.")
    if any(ch in _NBSP for ch in removed):
        repairs.append("Removed non-breaking spaces around the value.")
    if any(ch in _INVISIBLE and ch != "\ufeff" for ch in removed):
        repairs.append("Removed invisible zero-width characters around the value.")
    if any(ch.isspace() and ch not in _NBSP for ch in removed):
        repairs.append("Removed spaces or line breaks around the value.")
    return text[start:end]


def _strip_quotes(text: str, repairs: list[str]) -> str:
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        repairs.append("Removed the quotes around the value.")
        return text[1:-1]
    return text


def _strip_prefix(text: str, source: str, repairs: list[str]) -> str:
    for word, pattern in _PREFIXES:
        match = pattern.match(text)
        if match:
            repairs.append(f"Removed the leading '{word} ' (pasted from a command line).")
            return text[match.end() :]
    match = _JDBC.match(text)
    if match:
        repairs.append("Removed the leading 'jdbc:' (a Java driver prefix).")
        return text[match.end() :]
    match = _ASSIGNMENT.match(text)
    if match and _URLISH.match(text, match.end()):
        # Only the expected name is echoed: any other "name" might be data.
        name = match[1] if match[1].upper() == source.upper() else "NAME"
        repairs.append(f"Removed the leading '{name}=' (pasted from an environment file).")
        return text[match.end() :]
    return text


def shape_problem(text: str, source: str) -> str | None:
    """Problems with the cleaned value as a whole, reported before any parsing."""
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        return (
            f"{source} contains a control character or invalid Unicode inside the value "
            "(for example a line break, tab or NUL byte); it may be two values pasted "
            "together. Set it to a single URL."
        )
    if _VARIABLE.fullmatch(text) or re.fullmatch(r"<[^<>]*>", text):
        return (
            f"{source} holds an unexpanded variable or template placeholder instead of a "
            f"URL; set it to the real connection URL, e.g. {EXAMPLE_URL}."
        )
    if text[0] in QUOTES or text[-1] in QUOTES:
        return (
            f"{source} starts or ends with a quote that has no partner; remove the stray "
            "quote character."
        )
    return None
