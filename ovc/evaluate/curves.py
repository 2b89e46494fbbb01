"""Training curves: the per-step rows the train loop records, as plot columns, and whether a curve
flattened at the end (:func:`flatness`).

A curve is a list of rows ``{"step", "loss", "val_aupr_macro", "val_aupr_micro"}`` (extra keys
such as ``val_seconds`` are kept in ``curve.json`` but not plotted): ``step`` k is the number of
optimizer steps done, ``loss`` the (all-reduced) training loss of step k (none at step 0),
``val_aupr_*`` the val AUPR after k steps where the loop evaluated (``None`` elsewhere).

Pure numpy, like the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["CURVE_COLUMNS", "curve_columns", "flatness"]

CURVE_COLUMNS = ("step", "loss", "val_aupr_macro", "val_aupr_micro")  # the train-curve CSV's columns, in order


def _number(v: Any) -> float:
    """A cell as float; missing (None) becomes NaN (an empty cell in the CSV)."""
    return float("nan") if v is None else float(v)


def curve_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Rows -> ``{column: values}`` in :data:`CURVE_COLUMNS` order, what
    :func:`ovc.evaluate.plots.write_curve` writes: ``step`` as integers, the rest as floats (NaN
    where a row has no value: an empty cell)."""
    out = {"step": np.array([int(r["step"]) for r in rows], dtype=np.int64)}
    out.update({c: np.array([_number(r.get(c)) for r in rows], dtype=np.float64) for c in CURVE_COLUMNS[1:]})
    return out


def _points(curve: Sequence[Mapping[str, Any]] | Sequence[Sequence[float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the finite points of ``curve``, sorted by step."""
    pairs = []
    for row in curve:
        step, value = (row["step"], row.get(key)) if isinstance(row, Mapping) else (row[0], row[1])
        if value is not None and math.isfinite(float(value)):
            pairs.append((float(step), float(value)))
    pairs.sort()
    return np.array([p[0] for p in pairs], dtype=np.float64), np.array([p[1] for p in pairs], dtype=np.float64)


def flatness(
    curve: Sequence[Mapping[str, Any]] | Sequence[Sequence[float]], frac: float = 0.25, key: str = "val_aupr_macro"
) -> dict[str, float | int | None]:
    """How much a curve still moves over the last ``frac`` of training.

    The window is ``[s_end − frac·(s_end − s_start), s_end]`` over the steps of the curve's points
    (points without a value, e.g. steps where val was not evaluated, are skipped). The curve is read
    as piecewise linear between its points, so the window's start value is interpolated when no
    point falls exactly there.

    Args:
        curve: rows with ``"step"`` and ``key`` (as the train loop records them), or ``(step, value)`` pairs.
        frac: the share of training (in steps) the window spans, in (0, 1].
        key: the rows' field read (``val_aupr_macro``, ``val_aupr_micro``, ``loss``).

    Returns:
        ``{"change", "range", "from_step", "to_step", "points"}``: ``change`` = value at the end −
        value at the window's start (signed), ``range`` = max − min over the window (its start
        value included), ``points`` = the curve's points inside the window. ``change`` and
        ``range`` are None with fewer than two points in all.
    """
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    steps, values = _points(curve, key)
    if len(steps) < 2:
        return {"change": None, "range": None, "from_step": None, "to_step": None, "points": int(len(steps))}
    end = steps[-1]
    start = end - frac * (end - steps[0])
    inside = steps >= start
    start_value = float(np.interp(start, steps, values))  # piecewise-linear value where the window opens
    window = np.concatenate([[start_value], values[inside]])
    return {
        "change": float(values[-1] - start_value),
        "range": float(window.max() - window.min()),
        "from_step": float(start),
        "to_step": float(end),
        "points": int(inside.sum()),
    }
