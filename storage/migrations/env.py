"""Alembic environment: runs on the connection the Database hands in (or the configured URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from sqlmodel import SQLModel

target_metadata = SQLModel.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)
