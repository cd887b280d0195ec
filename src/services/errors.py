"""What the task services refuse, in domain terms (mapped to HTTP in src.http)."""

from __future__ import annotations


class TaskNotFound(Exception):
    """No such task for this user: a task owned by someone else is the same answer."""

    def __init__(self) -> None:
        super().__init__("No such task.")
