"""Masking of secrets in free text: the lowest layer, imported by everything that prints.

Every secret the process learns (database password, JWT secret, replica keys) is
registered with `redactor`; log records, status pages and error messages pass through it.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote

MASK = "***"
# Short values are only masked as whole tokens: masking "pg" inside "postgresql" would
# make every line unreadable without hiding anything.
_SUBSTRING_MIN_LEN = 6
# Plain words (user names such as "postgres") are masked only as whole tokens, so that
# "postgresql" stays readable; anything else that long is masked wherever it appears.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.-]+")


class Redactor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        with self._lock:
            before = len(self._secrets)
            for value in values:
                if value and value.strip():
                    self._secrets.add(value)
                    # Drivers sometimes echo the percent-encoded form.
                    encoded = quote(value, safe="")
                    if encoded != value:
                        self._secrets.add(encoded)
            if len(self._secrets) != before:
                self._pattern = self._compile()

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def _compile(self) -> re.Pattern[str] | None:
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
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)


redactor = Redactor()
