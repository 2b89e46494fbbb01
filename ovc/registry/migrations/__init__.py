"""Alembic migrations of the registry schema (shipped inside the package; run via ``ovc.registry.db.upgrade``)."""
