"""Engines, sessions and migrations of the registry database.

URL resolution (first that is set): ``cfg.registry.url`` -> ``$OVC_REGISTRY_URL`` ->
``sqlite:///<cfg.paths.data>/registry.db`` (the embedded default). Any SQLAlchemy URL works;
SQLite and PostgreSQL (``postgresql+psycopg2://...``) are tested.

SQLite engines get, on every connection: ``journal_mode=WAL`` (readers never block the writer),
``foreign_keys=ON`` (cascades), ``busy_timeout`` (wait for the lock instead of failing) and
``page_size=16384`` (new files; fits several vectors per page), ``synchronous=NORMAL`` (with WAL: atomic and crash-safe for the application; only the last commits
before a power loss may be lost). pysqlite's own transaction handling is switched off and we emit
``BEGIN`` ourselves, so a writer can take the write lock up front with ``BEGIN IMMEDIATE`` (a
deferred transaction that reads and then writes can fail with "database is locked" without ever
waiting) — see :func:`connect_for_write`.

The schema is created and changed only by Alembic (:func:`upgrade`), never by ``create_all``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ovc.paths import DataLayout

if TYPE_CHECKING:
    from ovc.config import Config

ENV_URL = "OVC_REGISTRY_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for the lock before "database is locked"
_BEGIN_OPTION = "ovc_sqlite_begin"  # execution option: DEFERRED (default) | IMMEDIATE | EXCLUSIVE


def resolve_url(cfg: Config | None = None, url: str = "") -> str:
    """The registry URL: ``url`` arg > ``cfg.registry.url`` > ``$OVC_REGISTRY_URL`` > SQLite under data/.

    Args:
        cfg: the typed config (``registry.url``, ``paths.data``); None = defaults.
        url: an explicit URL that wins over everything.
    """
    if url:
        return url
    if cfg is not None and cfg.registry.url:
        return cfg.registry.url
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    layout = DataLayout.of(cfg) if cfg is not None else DataLayout(Path("data"))
    return f"sqlite:///{layout.registry_db.as_posix()}"


def _is_sqlite_memory(url: Any) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, echo: bool = False) -> Engine:
    """An Engine for ``url`` with the registry's per-dialect settings (SQLite pragmas, pre-ping).

    A SQLite file's parent directory is created if missing. Engines are per process: create one
    after fork/spawn, never share one across processes.
    """
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(u, echo=echo, pool_pre_ping=True, future=True)

    db = u.database  # a non-empty str whenever the URL is not an in-memory SQLite one
    if db and not _is_sqlite_memory(u) and not db.startswith("file:"):  # URI form: the caller's file
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(u, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000})
    memory = _is_sqlite_memory(u)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        if not memory:
            # 16 KiB pages hold ~7 512-d float32 vectors; at the 4 KiB default each 2 KiB vector row
            # takes a whole page (2x file size and read time). Only takes effect on a new database.
            cur.execute("PRAGMA page_size=16384")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def connect_for_write(engine: Engine) -> Connection:
    """A connection whose transactions take the write lock at BEGIN on SQLite (no-op elsewhere).

    Writers that read before writing (all of the store's) must start with the lock, otherwise two
    deferred SQLite transactions can deadlock on the upgrade and one fails immediately.
    """
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    return conn


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine`` (``expire_on_commit=False``: returned objects stay readable)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


# --------------------------------------------------------------------------------------------------
# Migrations (Alembic, programmatic)
# --------------------------------------------------------------------------------------------------
def alembic_config(url: str = "") -> Any:
    """An Alembic ``Config`` pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config as AlembicConfig

    acfg = AlembicConfig()
    acfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        acfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return acfg


def _run_alembic(target: str | Engine, fn_name: str, revision: str) -> None:
    from alembic import command

    engine = make_engine(target) if isinstance(target, str) else target
    try:
        acfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with connect_for_write(engine) as conn:
            # One transaction for the whole run (transactional DDL on SQLite and PostgreSQL):
            # an interrupted upgrade leaves the previous schema, never half of the new one.
            with conn.begin():
                acfg.attributes["connection"] = conn
                getattr(command, fn_name)(acfg, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on a URL or Engine (idempotent; concurrent callers serialise)."""
    _run_alembic(target, "upgrade", revision)


def downgrade(target: str | Engine, revision: str) -> None:
    """``alembic downgrade <revision>`` (e.g. ``"base"`` drops every registry table)."""
    _run_alembic(target, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision stamped in the database (None = never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other backends and in-memory databases)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or _is_sqlite_memory(u):
        return None
    db = u.database
    assert db is not None  # _is_sqlite_memory(u) is False, so the path is set
    if db.startswith("file:"):  # URI form: sqlite:///file:/x/registry.db?mode=ro&uri=true
        db = db[len("file:") :].split("?", 1)[0]
    return Path(db).expanduser()


def registry_dir(target: Any) -> Path | None:
    """Directory of a file registry (SQLite), which relative artifact paths are stored against; None otherwise.

    Args:
        target: an Engine, a Session/Connection bound to one, or a URL string.
    """
    if isinstance(target, str):
        url = target
    else:
        bind = target.get_bind() if hasattr(target, "get_bind") else getattr(target, "engine", target)
        url = bind.url.render_as_string(hide_password=False)
    path = sqlite_path(url)
    return path.resolve().parent if path is not None else None


def where_hint() -> str:
    """How to point ovc at a registry: every name here is a real option."""
    return (
        "point at one with --registry URL, -S registry.url=URL (or registry.url in params.yaml) or "
        f"${ENV_URL}; the default is sqlite:///<paths.data>/registry.db under the current directory, "
        "created by `ovc stage publish` (or `dvc repro`) in a project"
    )


def _check_exists(url: str) -> None:
    from ovc.registry.errors import RegistryNotFoundError

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise RegistryNotFoundError(
            f"no registry at {path.resolve() if not path.is_absolute() else path} (cwd {Path.cwd()}); {where_hint()}"
        )


def open_registry(cfg: Config | None = None, url: str = "", *, migrate: bool = True, create: bool = True) -> Engine:
    """Engine for the configured registry, for writers: migrated to head first unless ``migrate=False``.

    Args:
        cfg: typed config (``registry.url``, ``paths.data``).
        url: explicit URL overriding the config.
        migrate: run ``alembic upgrade head`` (idempotent) before returning.
        create: a missing SQLite file is created (the publish stage); False raises
            RegistryNotFoundError instead (commands run by users: never a registry next to you by accident).
    """
    resolved = resolve_url(cfg, url)
    if not create:
        _check_exists(resolved)
    engine = make_engine(resolved)
    if migrate:
        try:
            # Check read-only first: at head (the usual case) no write lock is taken at open, so a
            # writer that turns out to have nothing to write never waits, and works on a read-only file.
            if current_revision(engine) != head_revision():
                upgrade(engine)
        except DBAPIError as e:
            engine.dispose()
            if read_only_error(e):
                from ovc.registry.errors import ReadOnlyRegistryError

                raise ReadOnlyRegistryError(
                    f"cannot migrate the read-only registry {engine.url.render_as_string(hide_password=True)} "
                    f"({str(e.orig).splitlines()[0]}); {where_hint()}"
                ) from None
            raise
        except Exception:
            engine.dispose()
            raise
    return engine


def read_only_error(exc: DBAPIError) -> bool:
    """A write refused because the database, its file or its directory is read-only (not retryable)."""
    if getattr(exc.orig, "pgcode", None) in ("25006", "42501"):  # read_only_sql_transaction, insufficient_privilege
        return True
    msg = str(exc.orig).lower()
    return any(m in msg for m in ("readonly database", "read-only", "unable to open database file"))


def open_registry_readonly(cfg: Config | None = None, url: str = "") -> Engine:
    """Engine for readers (``registry ls``, ``vocab ls``, ``classify``): never creates, never migrates.

    The schema revision is read (a plain SELECT, no lock): a registry that is not at this package's
    head raises RegistrySchemaError naming the fix instead of being migrated, so a reader never waits
    for the write lock behind a long writer (SQLite WAL: readers and one writer run concurrently).

    Raises:
        RegistryNotFoundError: the SQLite file does not exist.
        RegistrySchemaError: not migrated, or at another revision.
    """
    from ovc.registry.errors import RegistrySchemaError

    resolved = resolve_url(cfg, url)
    _check_exists(resolved)
    engine = make_engine(resolved)
    try:
        current, head = current_revision(engine), head_revision()
    except Exception:
        engine.dispose()
        raise
    if current != head:
        engine.dispose()
        shown = engine.url.render_as_string(hide_password=True)
        if current is None:
            raise RegistrySchemaError(f"{shown} is not an ovc registry (no schema revision); {where_hint()}")
        raise RegistrySchemaError(
            f"{shown} is at schema revision {current}, this ovc reads {head}: run `ovc registry upgrade` "
            "(or any writing command, e.g. `ovc vocab add`) to migrate it"
        )
    return engine
