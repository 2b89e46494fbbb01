"""Alembic environment of the registry.

Run programmatically through ``ovc.registry.db.upgrade(url)`` (which hands over a connection with the
registry's SQLite pragmas and an open transaction). To write a new revision after changing
``ovc/registry/models.py``, autogenerate it against a database at head, then review it by hand:

    python -c "from alembic import command; from ovc.registry.db import alembic_config; \\
        command.revision(alembic_config('sqlite:////tmp/at_head.db'), 'what changed', autogenerate=True, rev_id='0002')"

``target_metadata`` is the ORM's metadata, so autogenerate diffs the models against that database.
"""

from __future__ import annotations

from alembic import context

from ovc.registry.db import make_engine
from ovc.registry.models import Base

config = context.config
target_metadata = Base.metadata

# Arbitrary constant: PostgreSQL advisory lock id that serialises concurrent `upgrade` runs.
_PG_MIGRATION_LOCK = 0x0C5E61


def _configure(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs via table copy
        transactional_ddl=True,  # SQLite DDL is transactional too: one migration = one transaction
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed over by ovc.registry.db (transaction already open)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: no database URL (pass -x url=... or set sqlalchemy.url)")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
