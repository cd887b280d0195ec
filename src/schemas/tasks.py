"""Task request and response bodies.

Requests are strict: unknown fields, wrong types (`"completed": "yes"`, a number for a
title) and text no database can store identically (NUL characters, lone surrogates)
are 400s, never a 500 from a driver further down.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from src.models.task import DESCRIPTION_MAX, TITLE_MAX

StatusFilter = Literal["all", "pending", "completed"]
TaskStatusValue = Literal["pending", "completed"]


def _storable(value: str) -> str:
    # PostgreSQL refuses NUL in text; a lone surrogate cannot be encoded as UTF-8 at all.
    # Both would otherwise be a 500 on one backend and silently stored on another.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from None
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX),
    AfterValidator(_storable),
    Field(description=f"1 to {TITLE_MAX} characters; surrounding whitespace is removed."),
]
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX),
    AfterValidator(_storable),
    Field(description=f"At most {DESCRIPTION_MAX} characters."),
]


def _iso_utc(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


# ISO 8601 with an explicit offset (`+00:00`); pydantic on its own would write `Z`.
UtcTimestamp = Annotated[
    datetime,
    PlainSerializer(_iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TaskCreate(_Request):
    title: Title
    description: Description | None = None


class TaskUpdate(_Request):
    """At least one field. `description: null` clears the description."""

    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None

    @model_validator(mode="after")
    def _some_change(self) -> TaskUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, description")
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null")
        return self

    def changes(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class TaskCompletion(_Request):
    """`completed` sets the state (idempotent); without it the state toggles."""

    completed: bool | None = None


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="UUID")
    title: str
    description: str | None
    status: TaskStatusValue
    user_id: str
    created_at: UtcTimestamp
    updated_at: UtcTimestamp


TASK = TypeAdapter(TaskRead)
TASK_LIST = TypeAdapter(list[TaskRead])
