"""Registry transactions: one write transaction per call, retried on transient conflicts; read sessions.

SQLite writers take the lock at ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout``; transient
"database is locked" (SQLite) and serialization/deadlock/unique-violation errors (PostgreSQL) are
retried with jittered backoff; a read-only database raises :class:`ReadOnlyRegistryError` (not
retried) and a lock held past every retry :class:`RegistryBusyError` (retryable later).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from ovc.registry.db import connect_for_write, read_only_error
from ovc.registry.errors import ReadOnlyRegistryError, RegistryBusyError
from ovc.registry.models import Label

log = logging.getLogger(__name__)

T = TypeVar("T")
Target = Engine | Session

CHUNK = 500  # bound parameters per IN (...) / executemany batch (SQLite caps variables per statement)
_RETRY_ATTEMPTS = 10
_PG_RETRYABLE = {"40001", "40P01", "23505", "55P03"}  # serialization, deadlock, unique race, lock timeout
_SQLITE_RETRYABLE = ("database is locked", "database table is locked", "database is busy")


def is_retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "pgcode", None)
    if code in _PG_RETRYABLE:
        return True
    if isinstance(exc, OperationalError):
        msg = str(exc.orig).lower()
        return any(m in msg for m in _SQLITE_RETRYABLE)
    return False


def write_transaction(target: Target, fn: Callable[[Session], T], *, attempts: int = _RETRY_ATTEMPTS) -> T:
    """Run ``fn(session)`` in one write transaction, retrying transient conflicts.

    With an Engine: a fresh transaction per attempt (``BEGIN IMMEDIATE`` on SQLite), committed at
    the end. With a Session: a SAVEPOINT inside the caller's transaction (no commit, no retry).
    ``fn`` may run more than once, so it must not have side effects outside the session.
    """
    if isinstance(target, Session):
        with target.begin_nested():
            return fn(target)
    delay = 0.02
    for attempt in range(1, attempts + 1):
        try:
            with connect_for_write(target) as conn, Session(bind=conn, expire_on_commit=False) as session:
                with session.begin():
                    return fn(session)
        except DBAPIError as e:
            if read_only_error(e):
                raise ReadOnlyRegistryError(
                    f"the registry {target.url.render_as_string(hide_password=True)} is read-only "
                    f"({str(e.orig).splitlines()[0]}); point --registry / $OVC_REGISTRY_URL at a writable one"
                ) from None
            if not is_retryable(e):
                raise
            if attempt == attempts:
                raise RegistryBusyError(
                    f"the registry {target.url.render_as_string(hide_password=True)} stayed locked by another "
                    f"writer after {attempts} attempts ({str(e.orig).splitlines()[0]}); try again later"
                ) from None
            log.info("registry write conflict (attempt %d/%d), retrying: %s", attempt, attempts, e.orig)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def read_session(target: Target, fn: Callable[[Session], T]) -> T:
    if isinstance(target, Session):
        return fn(target)
    with Session(target, expire_on_commit=False) as session:
        return fn(session)


def chunks(seq: Sequence[T], n: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def insert_ignore(session: Session, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for SQLite/PostgreSQL; None for other dialects."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return None


def text_order(session: Session) -> Any:
    """Label order by code point on every backend (PostgreSQL's default collation is locale-aware)."""
    if session.get_bind().dialect.name == "postgresql":
        return Label.text.collate("C")
    return Label.text
