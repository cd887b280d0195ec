"""Tasks as JSON Lines: one task per line, the API's JSON shape, read back with the API's rules.

A line is `{"id", "title", "description", "status", "completed", "user_id", "created_at",
"updated_at"}`, timestamps ISO 8601 in UTC with an explicit offset and microseconds
(`2026-01-02T03:04:05.123456+00:00`), UTF-8 (not ASCII-escaped). Reading accepts what the
API would: a title of 1-255 characters once trimmed, a description of at most 10 000
characters or null (or absent), `status` and/or `completed` (both only when they agree),
a UUID id (stored lower-case, as the API addresses it), a user id the API's path accepts,
timestamps with an offset and `created_at <= updated_at`. Unknown fields are refused
rather than dropped, so nothing in a file is silently lost.

Lines may end in LF or CRLF, the file may start with a UTF-8 BOM, blank lines are ignored;
a line longer than `MAX_LINE_BYTES` is refused without being read into memory whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from src.auth.user_id import USER_ID_RULE, UserId
from src.models.task import TaskRecord, TaskStatus
from src.schemas.tasks import Description, TaskStatusValue, Title

# Far above any valid line: 10 000 description characters written as 12-byte surrogate
# pair escapes are 120 KB, everything else a few KB more.
MAX_LINE_BYTES = 256 * 1024
_BOM = b"\xef\xbb\xbf"
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# MySQL's DATETIME holds years 1000-9999; outside them a task could not be stored alike
# on all three databases.
_EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
FIELDS = (
    "id",
    "title",
    "description",
    "status",
    "completed",
    "user_id",
    "created_at",
    "updated_at",
)


class LineError(ValueError):
    """A line that is not a valid task; `str()` is a sentence naming the line (and field)."""

    def __init__(self, line: int, message: str, field: str | None = None) -> None:
        self.line = line
        self.field = field
        super().__init__(
            f"Line {line}, field {field}: {message}" if field else f"Line {line} {message}"
        )


def _storable_time(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc < _EARLIEST:
        raise PydanticCustomError(
            "timestamp_range", "must be between the years 1000 and 9999 in UTC"
        )
    return utc


_Timestamp = Annotated[AwareDatetime, AfterValidator(_storable_time)]


class _TaskLine(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: Annotated[str, StringConstraints(pattern=_UUID_PATTERN)]
    title: Title
    description: Description | None = None
    status: TaskStatusValue | None = None
    completed: bool | None = None
    # (Lone surrogates never get this far: the JSON parser refuses them.)
    user_id: UserId
    created_at: _Timestamp
    updated_at: _Timestamp


def encode_task(record: TaskRecord) -> bytes:
    """One line (with its `\\n`) for a stored task."""
    document = {
        "id": record.id,
        "title": record.title,
        "description": record.description,
        "status": record.status,
        "completed": record.status == TaskStatus.COMPLETED.value,
        "user_id": record.user_id,
        "created_at": _timestamp(record.created_at),
        "updated_at": _timestamp(record.updated_at),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_task(line: bytes, number: int) -> TaskRecord:
    """The task on line `number` (1-based); raises `LineError`."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(
            number, f"is not UTF-8 text (bad byte at column {exc.start + 1})."
        ) from None
    try:
        task = _TaskLine.model_validate_json(text)
    except ValidationError as exc:
        raise _describe(number, exc.errors()[0]) from None
    if (
        task.status is not None
        and task.completed is not None
        and ((task.status == TaskStatus.COMPLETED.value) != task.completed)
    ):
        raise LineError(
            number,
            f'status "{task.status}" and completed {str(task.completed).lower()} '
            "contradict each other; give one of them, or make them agree.",
            "completed",
        )
    status: str
    if task.status is not None:
        status = task.status
    elif task.completed is not None:
        status = (TaskStatus.COMPLETED if task.completed else TaskStatus.PENDING).value
    else:
        raise LineError(
            number, 'is missing: give "pending" or "completed" (or completed).', "status"
        )
    if task.created_at > task.updated_at:
        raise LineError(
            number,
            "is earlier than created_at; a task cannot change before it exists.",
            "updated_at",
        )
    return TaskRecord(
        id=task.id.lower(),
        title=task.title,
        description=task.description,
        status=status,
        user_id=task.user_id,
        created_at=task.created_at,
        updated_at=task.updated_at,
    )


def _describe(number: int, error: ErrorDetails) -> LineError:
    kind = error["type"]
    if kind == "json_invalid":
        reason = str(error.get("ctx", {}).get("error", "")) or error["msg"]
        reason = reason.replace("at line 1 column", "at column")
        return LineError(number, f"is not valid JSON ({reason}).")
    if kind == "model_type" or not error["loc"]:
        return LineError(number, "must be a JSON object (one task per line).")
    field = ".".join(str(part) for part in error["loc"])
    if kind == "missing":
        return LineError(number, "is required.", field)
    if kind == "extra_forbidden":
        return LineError(number, f"is not a task field (expected {', '.join(FIELDS)}).", field)
    message = error["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        message = _PATTERN_MESSAGES.get(field, message)
    return LineError(number, message[0].lower() + message[1:].rstrip(".") + ".", field)


_PATTERN_MESSAGES = {
    "id": "must be a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e",
    "user_id": USER_ID_RULE,
}


def read_tasks(
    stream: IO[bytes], max_bytes: int = MAX_LINE_BYTES
) -> Iterator[TaskRecord | LineError]:
    """Each non-blank line as a task, or the `LineError` saying why it is not one.

    Never holds more than `max_bytes + 2` bytes of a line: a longer one is skipped.
    """
    number = 0
    while True:
        # Room for the CRLF of a line exactly at the limit.
        line = stream.readline(max_bytes + 2)
        if not line:
            return
        number += 1
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        complete = line.endswith(b"\n")
        content = line.removesuffix(b"\n").removesuffix(b"\r")
        if len(content) > max_bytes:
            while not complete:
                rest = stream.readline(max_bytes)
                complete = not rest or rest.endswith(b"\n")
            yield LineError(number, f"is longer than {max_bytes} bytes; no task is that long.")
        elif content.strip():
            try:
                yield parse_task(content, number)
            except LineError as error:
                yield error
