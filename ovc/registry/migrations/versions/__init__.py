"""Alembic revision scripts (``NNNN_slug.py``); Alembic skips this file."""
