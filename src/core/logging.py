"""Logging set-up: one handler on the root logger, text or JSON, with secrets redacted.

Redaction happens on the final formatted line (message, arguments and traceback alike),
so a password that reaches a log record through a driver's exception text is still
masked. Every secret the process learns (database user and password, JWT secret) is
registered with `redactor`.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from src.core.redaction import redactor

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


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
