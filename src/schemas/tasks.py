"""Task request and response bodies.

Requests are strict: unknown fields, wrong types (`"completed": "yes"`, a number for a
title) and text no database can store identically (NUL characters, lone surrogates)
are 400s, never a 500 from a driver further down.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from src.models.task import DESCRIPTION_MAX, TITLE_MAX
from src.schemas.text import WHITESPACE, WHITESPACE_CLASS

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


_W = f"[{WHITESPACE_CLASS}]"
_N = rf"[^{WHITESPACE_CLASS}\x00]"
# No NUL anywhere; once trimmed, 1 to TITLE_MAX characters. (Spelled as an alternation:
# schemathesis' boundary-value generator cannot satisfy `N(?:…N)?`.)
TITLE_PATTERN = rf"^{_W}*(?:{_N}|{_N}[^\x00]{{0,{TITLE_MAX - 2}}}{_N}){_W}*$"
NO_NUL_PATTERN = r"^[^\x00]*$"


def _title(value: str) -> str:
    value = value.strip(WHITESPACE)
    if not value:
        raise PydanticCustomError(
            "string_too_short", "must contain a character other than whitespace"
        )
    if len(value) > TITLE_MAX:
        raise PydanticCustomError(
            "string_too_long",
            "must be at most {max_length} characters once surrounding whitespace is removed",
            {"max_length": TITLE_MAX},
        )
    return _storable(value)


# Documented as the pattern (not minLength/maxLength): the limits apply after trimming.
Title = Annotated[
    str,
    AfterValidator(_title),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "pattern": TITLE_PATTERN,
            "description": "Surrounding whitespace (Unicode White_Space) is removed; "
            f"then 1 to {TITLE_MAX} characters. No NUL.",
        }
    ),
]
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX),
    AfterValidator(_storable),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": DESCRIPTION_MAX,
            "pattern": NO_NUL_PATTERN,
            "description": f"At most {DESCRIPTION_MAX} characters. No NUL.",
        }
    ),
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


def status_of_completed(completed: bool) -> TaskStatusValue:
    return "completed" if completed else "pending"


# A body may say the state either way (`status` or the boolean `completed`), or both if
# they agree. Stated in the schema too, so that clients and fuzzers know it.
_AGREEING_STATE: dict[str, Any] = {
    "not": {
        "anyOf": [
            {
                "required": ["status", "completed"],
                "properties": {"status": {"const": status}, "completed": {"const": completed}},
            }
            for status, completed in (("pending", True), ("completed", False))
        ]
    }
}


def _refuse_nulls(model: BaseModel, *names: str) -> None:
    """A field sent as `null` that has no meaning as null: ValueError. Its default is not
    the same request (on PATCH …/complete, no `completed` toggles)."""
    for name in names:
        if name in model.model_fields_set and getattr(model, name) is None:
            raise ValueError(f"{name} cannot be null")


class _WithState(_Request):
    status: TaskStatusValue | SkipJsonSchema[None] = Field(
        default=None, description="`pending` or `completed`; or send `completed` instead."
    )
    completed: bool | SkipJsonSchema[None] = Field(
        default=None, description="The state as a boolean (`status` == `completed`)."
    )

    @model_validator(mode="after")
    def _one_state(self) -> _WithState:
        _refuse_nulls(self, "status", "completed")
        if (
            self.status is not None
            and self.completed is not None
            and self.status != status_of_completed(self.completed)
        ):
            raise ValueError(
                f"status {self.status!r} and completed {str(self.completed).lower()} disagree; "
                "send one of them"
            )
        return self

    def state(self) -> TaskStatusValue | None:
        """The requested status, if the body gives one."""
        if self.status is not None:
            return self.status
        return None if self.completed is None else status_of_completed(self.completed)


class TaskCreate(_WithState):
    """A new task: pending unless `status` / `completed` say otherwise."""

    model_config = ConfigDict(json_schema_extra=_AGREEING_STATE)

    title: Title
    description: Description | None = None


class TaskUpdate(_WithState):
    """At least one field. `description: null` clears the description."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, **_AGREEING_STATE})

    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None

    @model_validator(mode="after")
    def _some_change(self) -> TaskUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, description, status, completed")
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null")
        return self

    def changes(self) -> dict[str, str | None]:
        """The columns to change: `title`, `description`, `status`."""
        changes: dict[str, str | None] = {
            name: getattr(self, name)
            for name in ("title", "description")
            if name in self.model_fields_set
        }
        state = self.state()
        if state is not None:
            changes["status"] = state
        return changes


class TaskCompletion(_Request):
    """`completed` sets the state (idempotent); without it the state toggles. `null` is
    refused (400): a client that meant to set the state must not flip it."""

    completed: bool | SkipJsonSchema[None] = Field(
        default=None, description="The state to set; leave it out to toggle."
    )

    @model_validator(mode="after")
    def _not_null(self) -> TaskCompletion:
        _refuse_nulls(self, "completed")
        return self


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="UUID")
    title: str
    description: str | None
    status: TaskStatusValue
    completed: bool = Field(description='Always `status == "completed"`.')
    user_id: str
    created_at: UtcTimestamp
    updated_at: UtcTimestamp
