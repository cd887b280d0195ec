"""The connection's character set: it must carry every character a task may hold.

A connection in `latin1` or MySQL's `utf8` (really `utf8mb3`, three bytes at most)
fails on the first emoji or on most of the world's scripts, at the moment a
user saves a task. MySQL's `utf8`/`utf8mb3` only ever meant "Unicode" to whoever
wrote it, so it becomes `utf8mb4`; any other limited character set is an error,
since what the user meant by it cannot be known. Sources: MySQL "The utf8mb3
Character Set" (https://dev.mysql.com/doc/refman/8.0/en/charset-unicode-utf8mb3.html),
PostgreSQL "Character Set Support" (https://www.postgresql.org/docs/current/multibyte.html).
"""

from __future__ import annotations

import re

from src.database.url.options import Options

# Character sets that can encode every Unicode code point.
_MYSQL_FULL_UNICODE = frozenset({"utf8mb4", "gb18030"})
_MYSQL_UTF8MB3 = frozenset({"utf8", "utf8mb3"})
# Everything else PyMySQL knows (pymysql/charset.py): real, but not full Unicode.
_MYSQL_LIMITED = frozenset(
    {
        "armscii8", "ascii", "big5", "binary", "cp1250", "cp1251", "cp1256", "cp1257",
        "cp850", "cp852", "cp866", "cp932", "dec8", "eucjpms", "euckr", "gb2312", "gbk",
        "geostd8", "greek", "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "latin1", "latin2",
        "latin5", "latin7", "macce", "macroman", "sjis", "swe7", "tis620", "ucs2", "ujis",
        "utf16", "utf16le", "utf32",
    }
)  # fmt: skip
# PostgreSQL's names, compared the way the server does: case-folded, '-' and '_' ignored.
_PG_FULL_UNICODE = frozenset({"utf8", "unicode", "gb18030"})


def _folded(name: str) -> str:
    return re.sub(r"[-_]", "", name.lower())


def mysql_charset(opts: Options, value: str, source: str) -> None:
    """Keep a full-Unicode `charset`, turn utf8/utf8mb3 into utf8mb4, refuse the rest."""
    folded = _folded(value)
    if value.lower() in _MYSQL_FULL_UNICODE:
        opts.query["charset"] = value.lower()
    elif folded in _MYSQL_UTF8MB3:
        opts.query["charset"] = "utf8mb4"
        opts.repairs.append(
            "Used charset=utf8mb4 instead of utf8 (MySQL's utf8 is utf8mb3, which cannot "
            "store emoji and other characters beyond three bytes)."
        )
    elif folded in _MYSQL_LIMITED:
        opts.errors.append(
            f"The option 'charset' in {source} is {folded}, which cannot store every "
            "character a task may hold (emoji, many scripts); use charset=utf8mb4 or remove "
            "the option."
        )
    else:
        opts.errors.append(
            f"The option 'charset' in {source} is not a character set MySQL knows; use "
            "charset=utf8mb4 or remove the option."
        )


def postgresql_client_encoding(opts: Options, value: str, source: str) -> bool:
    """Whether a `client_encoding` carries every character; an error sentence if not."""
    if _folded(value) in _PG_FULL_UNICODE:
        return True
    opts.errors.append(
        f"The option 'client_encoding' in {source} names an encoding that cannot carry every "
        "character a task may hold (emoji, many scripts); use client_encoding=UTF8 or remove "
        "the option."
    )
    return False
