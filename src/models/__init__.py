"""Table models. Importing this package registers every table on SQLModel.metadata."""

from src.models.task import Task, TaskStatus

__all__ = ["Task", "TaskStatus"]
