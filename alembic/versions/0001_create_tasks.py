"""Create the tasks table.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from src.models.task import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        mysql_charset="utf8mb4",
        mysql_collate=_exact_collation(),
    )
    op.create_index("ix_tasks_user_created", "tasks", ["user_id", "created_at"])
    op.create_index("ix_tasks_user_status_created", "tasks", ["user_id", "status", "created_at"])


def _exact_collation() -> str:
    """A collation that compares user ids byte for byte and without padding.

    A case-insensitive collation would let "Alice" read "alice"'s tasks, and a PAD SPACE
    one (utf8mb4_bin) makes "alice" equal "alice ".
    """
    bind = op.get_bind()
    if getattr(bind.dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = bind.dialect.server_version_info or (0,)
    return "utf8mb4_0900_bin" if version >= (8, 0) else "utf8mb4_bin"


def downgrade() -> None:
    op.drop_index("ix_tasks_user_status_created", table_name="tasks")
    op.drop_index("ix_tasks_user_created", table_name="tasks")
    op.drop_table("tasks")
