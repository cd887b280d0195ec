"""Masking of secrets in free text: the lowest layer, imported by everything that prints.

Two kinds of value are registered with `redactor`:

* secrets (database passwords, JWT secrets, replica keys) are masked wherever they
  appear, in every spelling a driver or an encoder may give them (percent-encoded,
  JSON-escaped);
* user names are masked only where they stand as credentials (`user "app"`,
  `user=app`, `//app:…@`, `'app'@'host'`): a database user named `app` or `user` must
  not turn `/home/user/app/data` into `/home/***/***/data`.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote

MASK = "***"
# Short values are only masked as whole tokens: masking "pg" inside "postgresql" would
# make every line unreadable without hiding anything.
_SUBSTRING_MIN_LEN = 6
# Plain words are masked only as whole tokens, so that a password "postgres" does not
# make "postgresql" read "***ql"; anything else that long is masked wherever it appears.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.-]+")
# Where a user name is a credential: after user/role/login (quoted, or `=`), as in
# libpq's `user "app"`, MySQL's `user 'app'@'host'` and `user=app`; and after `//` in a URL.
_USER_CONTEXT = r"(?:\b(?:user(?:name)?|role|login)\b\s*[=:]?\s*[\"']?|//)"
_USER_END = r"(?=[\"'`]?(?:[@:\s,;)]|$))"


def _spellings(value: str) -> set[str]:
    """The value as written, percent-encoded and JSON-escaped (as encoders print it)."""
    spellings = {value, quote(value, safe="")}
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    spellings.add(escaped)
    spellings.add(json.dumps(value)[1:-1])  # with \\uXXXX escapes, as ensure_ascii does
    return {s for s in spellings if s}


class Redactor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._usernames: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._user_pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        """Register secrets: masked wherever they appear."""
        with self._lock:
            before = len(self._secrets)
            for value in values:
                if value and value.strip():
                    self._secrets.update(_spellings(value))
            if len(self._secrets) != before:
                self._pattern = self._compile_secrets()

    def add_username(self, *names: str | None) -> None:
        """Register user names: masked where they stand as credentials."""
        with self._lock:
            before = len(self._usernames)
            self._usernames.update(n for n in names if n and n.strip())
            if len(self._usernames) != before:
                alternatives = "|".join(
                    re.escape(n) for n in sorted(self._usernames, key=len, reverse=True)
                )
                self._user_pattern = re.compile(
                    rf"(?P<pre>{_USER_CONTEXT})(?:{alternatives}){_USER_END}", re.I
                )

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._usernames.clear()
            self._pattern = None
            self._user_pattern = None

    @property
    def active(self) -> bool:
        return self._pattern is not None or self._user_pattern is not None

    def _compile_secrets(self) -> re.Pattern[str] | None:
        if not self._secrets:
            return None
        parts = []
        for secret in sorted(self._secrets, key=len, reverse=True):
            escaped = re.escape(secret)
            if len(secret) >= _SUBSTRING_MIN_LEN and not _PLAIN_WORD.fullmatch(secret):
                parts.append(escaped)
            else:
                parts.append(rf"(?<![\w.-]){escaped}(?![\w-])")
        return re.compile("|".join(parts))

    def redact(self, text: str) -> str:
        if not text:
            return text
        pattern, user_pattern = self._pattern, self._user_pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if user_pattern is not None:
            text = user_pattern.sub(lambda m: m["pre"] + MASK, text)
        return text


redactor = Redactor()
