"""Commands for whole collections and long videos: ``classify --segments`` output, and (mounted in
:mod:`ovc.cli`) ``ovc serve``, ``ovc predict``, ``ovc registry promote|rollback``.

    ovc classify long.mp4 --vocab train --segments [--json] [--window-s 2 --stride-s 1]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ovc.cli.common import ParamsOpt, RegistryOpt, SetOpt, err, error_line, load_cfg, open_engine, registry_session

if TYPE_CHECKING:
    from ovc.infer.classifier import Classifier


def print_segments(
    clf: Classifier,
    videos: Sequence[str | os.PathLike],
    threshold: Any,
    window_s: float | None,
    stride_s: float | None,
    as_json: bool,
    progress: bool | None,
) -> int:
    """Run :meth:`Classifier.classify_segments` and print the intervals; returns the exit code.

    JSON: a list of ``{video, duration, windows, segments: [{label, start, end, score}], error}``.
    Exit code 1 when no video could be read, else 0. Raises ValueError for bad window settings.
    """
    if threshold is None:
        raise ValueError("--segments needs a threshold ('calibrated' or a number), not 'none'")
    results = clf.classify_segments(videos, threshold, window_s=window_s, stride_s=stride_s, progress=progress)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        for r in results:
            typer.echo(f"{r.video}" + ("" if r.error else f"  ({r.duration:.2f} s, {r.windows} windows)"))
            if r.error:
                typer.echo(f"    error: {r.error}")
            elif not r.segments:
                typer.echo("    (no label above the threshold in any window)")
            for s in r.segments:
                typer.echo(f"    {s['start']:8.2f} - {s['end']:8.2f} s  {s['score']:.3f}  {s['label']}")
    bad = [r for r in results if r.error]
    for r in bad:
        err(f"  unreadable: {r.error}", "yellow")
    err(
        f"{len(results) - len(bad)} of {len(results)} video(s) in windows against {clf.vocab!r} "
        f"({len(clf.labels)} labels, model version {clf.model.name})"
        + (f"; {len(bad)} could not be read" if bad else "")
    )
    return 1 if bad and len(bad) == len(results) else 0


# --------------------------------------------------------------------------------------------------
# ovc registry promote | rollback
# --------------------------------------------------------------------------------------------------
def promote_cmd(
    version: str = typer.Argument(..., help="model version name, or an alias such as 'candidate'"),
    alias: str = typer.Option("production", "--alias", help="alias to move"),
    note: str | None = typer.Option(None, "--note", help="why (kept in the promotion history)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable JSON on stdout"),
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Point an alias (default production) at a version; recorded with both versions' figures."""
    from ovc.registry.aliases import promote

    # a RegistryError (an OvcError) is printed by the app as one line, exit 2
    with registry_session(registry, params, set_, write=True) as (cfg, engine):
        out = promote(
            engine,
            version,
            alias,
            note=note or "by hand (ovc registry promote)",
            metric=cfg.promote.metric,
            split=cfg.promote.split,
        )
    typer.echo(json.dumps(out) if as_json else f"{out['alias']}: {out['from'] or '-'} -> {out['to']}")


def rollback_cmd(
    alias: str = typer.Option("production", "--alias", help="alias to move back"),
    note: str | None = typer.Option(None, "--note", help="why (kept in the promotion history)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable JSON on stdout"),
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Point an alias back at the version its last promotion replaced."""
    from ovc.registry.aliases import rollback

    with registry_session(registry, params, set_, write=True) as (cfg, engine):
        out = rollback(
            engine,
            alias,
            note=note or "by hand (ovc registry rollback)",
            metric=cfg.promote.metric,
            split=cfg.promote.split,
        )
    typer.echo(json.dumps(out) if as_json else f"{out['alias']}: {out['from']} -> {out['to']} (rollback)")


def aliases_cmd(
    as_json: bool = typer.Option(False, "--json", help="machine-readable JSON on stdout"),
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Aliases and the promotion history (with both versions' figures)."""
    from ovc.registry.aliases import history, list_aliases

    with registry_session(registry, params, set_) as (_, engine):
        out: dict[str, Any] = {"aliases": list_aliases(engine), "history": history(engine)}
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    for name, v in out["aliases"].items():
        typer.echo(f"{name:12s} -> {v}")
    for h in out["history"]:
        typer.echo(
            f"  {h['at']}  {h['alias']:10s} {h['action']:9s} {h['from'] or '-'} -> {h['to'] or '-'}  {h['note'] or ''}"
        )


# --------------------------------------------------------------------------------------------------
# ovc serve
# --------------------------------------------------------------------------------------------------
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
    model_version: str = typer.Option(
        "production", "--model-version", help="alias (production = promoted, else latest), 'latest' or a version"
    ),
    media_root: str | None = typer.Option(
        None, "--media-root", help="folder `path` requests may read (default serve.media_root)"
    ),
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Serve POST /classify, GET /vocabularies, /healthz, /metrics over HTTP (see ovc.serve.app)."""
    import logging

    import uvicorn

    from ovc.infer.published import PublishedModelError
    from ovc.registry.store import RegistryError
    from ovc.serve.app import RequestError, build_state, create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_cfg(params, set_)
    engine = open_engine(cfg, registry)
    engine.dispose()
    if media_root is not None:
        cfg.serve.media_root = media_root
    try:
        state = build_state(cfg, registry, model_version)
    except (RegistryError, PublishedModelError) as e:
        err(f"error: {error_line(e)}", "red")
        raise typer.Exit(2) from None
    try:
        state.classifier(cfg.serve.default_vocab)  # load the default vocabulary before the first request
    except RequestError as e:
        err(f"note: default vocabulary not loaded: {e.message}", "yellow")
    err(
        f"serving model version {state.model.name} on http://{host}:{port} "
        f"(media root: {cfg.serve.media_root or 'none, uploads only'})"
    )
    try:
        uvicorn.run(create_app(state), host=host, port=port, log_level="warning")
    finally:
        state.engine.dispose()


# --------------------------------------------------------------------------------------------------
# ovc predict
# --------------------------------------------------------------------------------------------------
def predict_cmd(
    source: str = typer.Argument(
        ..., help="a manifest (.parquet/.csv with `path`, .txt one a line), a directory or a glob"
    ),
    vocab: str = typer.Option(..., "--vocab", help="registry vocabulary to classify against"),
    out: Path = typer.Option(..., "--out", help="output folder: predictions/ and errors/ parquet partitions"),
    model_version: str = typer.Option(
        "production", "--model-version", help="alias (production = promoted, else latest), 'latest' or a version"
    ),
    threshold: str = typer.Option(
        "calibrated", "--threshold", help="'calibrated' (registry), a number in [0, 1], or 'none' (with --top-k)"
    ),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="at most K labels per video (or window)"),
    segments: bool = typer.Option(False, "--segments", help="sliding windows -> label intervals (start, end columns)"),
    workers: int | None = typer.Option(None, "--workers", min=1, help="embedding actors (default predict.workers)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
    as_json: bool = typer.Option(False, "--json", help="the run summary as JSON on stdout"),
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Classify a whole collection on Ray Data into partitioned parquet (resumable; see ovc.infer.predict)."""
    import logging

    from ovc.infer.predict import PredictError, predict
    from ovc.infer.published import PublishedModelError
    from ovc.registry.store import RegistryError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    thr: Any = threshold.strip().lower()
    if thr in ("none", "off"):
        thr = None
        if top_k is None:
            err("error: --threshold none needs --top-k", "red")
            raise typer.Exit(2)
    elif thr != "calibrated":
        try:
            thr = float(thr)
        except ValueError:
            err(f"error: --threshold must be 'calibrated', 'none' or a number in [0, 1], got {threshold!r}", "red")
            raise typer.Exit(2) from None
    cfg = load_cfg(params, set_)
    engine = open_engine(cfg, registry)
    engine.dispose()
    try:
        summary = predict(
            source,
            vocab,
            out,
            cfg=cfg,
            registry_url=registry,
            model_version=model_version,
            threshold=thr,
            top_k=top_k,
            segments=segments,
            workers=workers,
            progress=progress,
        )
    except (PredictError, RegistryError, PublishedModelError) as e:
        err(f"error: {error_line(e)}", "red")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        typer.echo(
            f"run {summary.run_id}: {summary.classified} classified, {summary.errors} unreadable of {summary.videos} videos; "
            f"{summary.partitions_written} partition(s) written, {summary.partitions_skipped} already done -> {summary.out}"
        )
    if summary.errors:
        err(f"  {summary.errors} unreadable video(s): see {summary.out}/errors/", "yellow")


def mount(app: typer.Typer, registry_app: typer.Typer) -> None:
    """Register this module's commands on the ``ovc`` app (called from :mod:`ovc.cli`)."""
    app.command("serve")(serve_cmd)
    app.command("predict")(predict_cmd)
    registry_app.command("promote")(promote_cmd)
    registry_app.command("rollback")(rollback_cmd)
    registry_app.command("aliases")(aliases_cmd)
