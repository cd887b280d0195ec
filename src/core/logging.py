"""Logging set-up: one handler on the root logger, text or JSON, with secrets redacted.

Redaction happens on the final formatted line (message, arguments and traceback alike),
so a password that reaches a log record through a driver's exception text is still
masked. Every secret the process learns (database user and password, JWT secret) is
registered with `redactor`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

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


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redactor.redact(super().format(record))


class TextFormatter(_RedactingFormatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(request_id)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or request_id_var.get()
        record.request_id = f"[{rid}] " if rid else ""
        return super().format(record)


class JsonFormatter(_RedactingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        if rid:
            payload["request_id"] = rid
        for key in ("method", "path", "status", "duration_ms", "client"):
            value = getattr(record, key, None)
            if value is not None:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redactor.redact(json.dumps(payload, ensure_ascii=False, default=str))


_base_factory = logging.getLogRecordFactory()


def _redacting_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Redact at creation, so every handler (pytest's capture included) sees masked text."""
    record = _base_factory(*args, **kwargs)
    if redactor._pattern is None:
        return record
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        return record
    record.msg, record.args = redactor.redact(message), None
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = redactor.redact(logging.Formatter().formatException(record.exc_info))
    return record


logging.setLogRecordFactory(_redacting_record_factory)

_OWNED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "alembic")


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Route everything through one redacting handler on stderr. Idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._todo_backend = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_todo_backend", False):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _OWNED_LOGGERS:
        owned = logging.getLogger(name)
        owned.handlers.clear()
        owned.propagate = True
    # Our middleware writes one access line per request, with the request id.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
