"""Commands for whole collections and long videos: ``classify --segments`` output, and (mounted in
:mod:`ovc.cli`) ``ovc serve``, ``ovc predict``, ``ovc registry promote|rollback``.

    ovc classify long.mp4 --vocab train --segments [--json] [--window-s 2 --stride-s 1]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ovc.infer.classifier import Classifier


def _err(msg: str, color: str | None = None) -> None:
    typer.secho(msg, fg=color, err=True)


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
        _err(f"  unreadable: {r.error}", "yellow")
    _err(f"{len(results) - len(bad)} of {len(results)} video(s) in windows against {clf.vocab!r} "
         f"({len(clf.labels)} labels, model version {clf.model.name})" + (f"; {len(bad)} could not be read" if bad else ""))
    return 1 if bad and len(bad) == len(results) else 0
