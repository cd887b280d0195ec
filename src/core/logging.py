"""Logging set-up: one handler on the root logger, text or JSON, with secrets redacted.

Redaction happens when a record is created (message, arguments and traceback), so every
handler — pytest's capture included — sees masked text, and again on every field just
before it is written. JSON lines come from python-json-logger; each field is redacted
*before* encoding, so a secret holding `"` or `\\` cannot slip through escaped. Text
lines escape control characters in every field (a request path `%0A…` must not forge a
log line, nor `%1b` reach a terminal raw) and indent tracebacks, so that no line a client
can influence starts where a record does.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from src.core.redaction import redactor

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# C0 and C1 controls and DEL; tab is kept readable as \t like the rest.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TRACEBACK_INDENT = "    "
# Fields our middleware attaches to access-log records.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "client")
# Record attributes never written as JSON fields: the standard ones (python-json-logger's
# list), and uvicorn's `color_message`, its message again with terminal colour codes.
_NOT_FIELDS = (*RESERVED_ATTRS, "color_message")


def escape_controls(text: str) -> str:
    """`\\n`, `\\x1b`… written out, so one record stays one line."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(request_id)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(redactor.redact(record.getMessage()))
        rid = getattr(record, "request_id", None) or request_id_var.get()
        record.request_id = f"[{escape_controls(rid)}] " if rid else ""
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        # exc_text is set (redacted) when the record is created; see the factory below.
        details = record.exc_text or (
            self.formatException(record.exc_info) if record.exc_info else ""
        )
        if record.stack_info:
            details = "\n".join(filter(None, (details, self.formatStack(record.stack_info))))
        return line + ("\n" + _indented(redactor.redact(details)) if details else "")


def _indented(text: str) -> str:
    """Every line indented and its control characters escaped (tabs kept)."""
    return "\n".join(
        _TRACEBACK_INDENT + _CONTROL.sub(_escape_unless_tab, line) for line in text.splitlines()
    )


def _escape_unless_tab(match: re.Match[str]) -> str:
    return match[0] if match[0] == "\t" else match[0].encode("unicode_escape").decode("ascii")


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id, the access-log
    fields when present, and `exception` for a traceback."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            reserved_attrs=_NOT_FIELDS,
            timestamp="time",
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        log_data["level"] = record.levelname.lower()
        rid = getattr(record, "request_id", None) or request_id_var.get()
        if rid:
            log_data["request_id"] = rid

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: _redact_value(value) for key, value in log_data.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


_base_factory = logging.getLogRecordFactory()


def _redacting_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Redact at creation, so every handler (pytest's capture included) sees masked text."""
    record = _base_factory(*args, **kwargs)
    if not redactor.active:
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


class AppHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler on the root logger (stderr), marked so it is never installed twice."""

    _todo_backend = True

    def __init__(self, fmt: str = "text") -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())


def uvicorn_log_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """The same set-up as `configure_logging`, as the dictConfig uvicorn applies in each
    worker process it starts, before the application exists (src.main builds it later)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"app": {"()": AppHandler, "fmt": fmt}},
        "root": {"handlers": ["app"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "propagate": True} for name in _OWNED_LOGGERS}
        | {"uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"}},
    }


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Route everything through one redacting handler on stderr. Idempotent."""
    handler = AppHandler(fmt)
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
