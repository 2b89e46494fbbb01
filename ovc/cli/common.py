"""The opening every ``ovc`` command shares: its options, config loading, the registry, messages.

One place decides how a command reads params (``--params``/``-S``), which registry it opens and
how (readers never create, migrate or lock; writers create only a URL the user named), and how a
user-facing error reads (one red line on stderr, exit 2; :class:`ovc.errors.OvcError` raised
anywhere below is printed the same way by the app's group in :mod:`ovc.cli.main`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ovc.errors import one_line

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ovc.config import Config

RegistryOpt = typer.Option(
    "", "--registry", help="registry URL (default: registry.url / $OVC_REGISTRY_URL / sqlite under data/)"
)
ParamsOpt = typer.Option(None, "--params", "-p", help="params file (default: $OVC_PARAMS or ./params.yaml)")
SetOpt = typer.Option(None, "--set", "-S", help="override a param, DVC-style: section.field=value (repeatable)")
JsonOpt = typer.Option(False, "--json", help="machine-readable JSON on stdout")


def err(msg: str, color: str | None = None) -> None:
    """A line on stderr (per-item reports, notes)."""
    typer.secho(msg, fg=color, err=True)


def error_line(exc: BaseException | str) -> str:
    """One line for a user-facing error: the message with newlines folded (no traceback)."""
    return one_line(exc) or type(exc).__name__


def fail(msg: str | BaseException, code: int = 2) -> typer.Exit:
    """Print ``error: <msg>`` on one red line; returns the Exit to raise."""
    err(f"error: {error_line(msg)}", "red")
    return typer.Exit(code)


def quiet_logging() -> None:
    """Warnings and errors only (per-item problems are printed by the commands themselves)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def load_cfg(params: Path | None, overrides: list[str] | None) -> Config:
    """params.yaml (or ``--params``) with ``-S`` overrides; a bad file or value is one line, exit 2."""
    from ovc.config import ConfigError, load_config

    try:
        return load_config(params, overrides)
    except ConfigError as e:
        raise fail(e) from None


def open_engine(cfg: Config, url: str, *, write: bool = False) -> Engine:
    """Open the registry: readers never create, migrate or lock; writers create only an explicit URL.

    A registry that is missing at the default path (``<data>/registry.db`` under the current
    directory: running ``ovc`` outside a project) is an error that says where to point, never a
    new empty registry. A URL the user named (``--registry``, ``registry.url``, ``$OVC_REGISTRY_URL``)
    may be created by a writing command.
    """
    import os

    from sqlalchemy.exc import SQLAlchemyError

    from ovc.registry.db import ENV_URL, open_registry, open_registry_readonly

    explicit = bool(url or cfg.registry.url or os.environ.get(ENV_URL))
    try:
        if write:
            return open_registry(cfg, url=url, create=explicit)
        return open_registry_readonly(cfg, url=url)
    except (SQLAlchemyError, ValueError, OSError) as e:  # bad URL, unreachable server, corrupt file
        raise fail(f"cannot open the registry: {type(e).__name__}: {error_line(e)}") from None


@contextmanager
def registry_session(
    registry: str, params: Path | None, overrides: list[str] | None, *, write: bool = False
) -> Iterator[tuple[Config, Engine]]:
    """``(cfg, engine)`` of a command's options; the engine is disposed when the command is done."""
    cfg = load_cfg(params, overrides)
    engine = open_engine(cfg, registry, write=write)
    try:
        yield cfg, engine
    finally:
        engine.dispose()
