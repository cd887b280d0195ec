"""The user ids the API can address: the rule for a path's `{user_id}`, which the token
command (src.cli.token) and the importer (src.services.task_lines) apply too, so that
nothing mints or stores an id no request could use.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints, TypeAdapter, ValidationError

from src.schemas.text import WHITESPACE_CLASS

USER_ID_MAX = 255
# No surrounding whitespace (MariaDB compares 'a' and 'a ' as equal) and no control
# characters: such ids could not be compared identically on every database. No `/`:
# servers decode `%2F` before routing, so such an id could never be addressed.
_EDGE = rf"[^{WHITESPACE_CLASS}\x00-\x1f\x7f/]"
_INNER = r"[^\x00-\x1f\x7f/]"
USER_ID_PATTERN = rf"^(?:{_EDGE}|{_EDGE}{_INNER}*{_EDGE})$"
# The pattern in words, for error messages (pydantic's would quote the regex itself).
USER_ID_RULE = (
    f"must be 1 to {USER_ID_MAX} characters, without surrounding whitespace, control "
    "characters or '/'"
)
UserId = Annotated[
    str, StringConstraints(min_length=1, max_length=USER_ID_MAX, pattern=USER_ID_PATTERN)
]
# Validates a user id (pydantic's ValidationError when the rule is not met).
USER_ID: TypeAdapter[str] = TypeAdapter(UserId)


def is_user_id(value: str) -> bool:
    """Whether `value` is an id the API's paths accept (see USER_ID_RULE)."""
    try:
        USER_ID.validate_python(value)
    except ValidationError:
        return False
    return True
