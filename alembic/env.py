"""Alembic environment: the same settings, resolver and start-up rules as the app.

The app (and `python -m src migrate`) hands over an open, locked connection in
`config.attributes["connection"]`; the plain `alembic` command gets the database the
app would use, chosen by the same code.
"""

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import src.models  # noqa: F401  (registers the tables on SQLModel.metadata)


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    if context.is_offline_mode():
        raise SystemExit("Offline (--sql) migrations are not supported; run them online.")
    from src.cli.migrate import migrate_with_app_rules

    migrate_with_app_rules(run_on)


main()
