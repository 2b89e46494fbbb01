"""Plot data files for ``dvc plots show`` and PNG figures (paper Fig. 6, PR curves, training curves).

Data files are CSV (one column per field) or JSON (``{key: [{field: value, ...}, ...]}``, one
array of objects) — the two shapes DVC's Vega-Lite templates read; pick by the file suffix. Point
counts are capped at ``max_points`` (≤ 500 by default) so the files stay small and diff-able.
All writes are atomic (temp file + ``os.replace``). Figures are drawn on matplotlib's Agg canvas
(no pyplot state).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from ovc.evaluate.metrics import check_inputs, f1_curve, pr_curve
from ovc.fileio import atomic_write_bytes  # noqa: E402  (re-exported)

__all__ = [
    "atomic_write_bytes",
    "downsample_indices",
    "write_curve",
    "write_pr_curve",
    "write_f1_threshold_curve",
    "plot_f1_vs_threshold",
    "plot_pr_curves",
    "plot_train_curve",
]


def downsample_indices(n: int, max_points: int = 500) -> np.ndarray:
    """≤ ``max_points`` evenly spaced indices into ``range(n)``, always keeping both ends."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def _clean(v: float) -> float | int | None:
    if isinstance(v, np.integer):  # integer columns (steps, counts) stay integers: "3", not "3.0"
        return int(v)
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else round(v, 6)


def _numeric(values: ArrayLike) -> np.ndarray:
    """Integer arrays as they are, anything else as float64."""
    a = np.asarray(values)
    return a if np.issubdtype(a.dtype, np.integer) else a.astype(np.float64)


def write_curve(columns: Mapping[str, ArrayLike], path, key: str = "curve") -> Path:
    """Write equally long numeric columns as CSV or JSON (by suffix) for DVC plots.

    Args:
        columns: field name -> values (NaN/inf become empty cells in CSV, null in JSON; integer
            arrays are written as integers).
        path: ``*.csv`` or ``*.json``.
        key: JSON only: name of the top-level array.
    """
    path = Path(path)
    names = list(columns)
    arrays = [_numeric(columns[k]).reshape(-1) for k in names]
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(f"columns of {path.name} differ in length: {[len(a) for a in arrays]}")
    rows = [[_clean(a[i]) for a in arrays] for i in range(len(arrays[0]) if arrays else 0)]
    if path.suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else repr(v) for v in row] for row in rows])
        data = buf.getvalue().encode()
    elif path.suffix == ".json":
        data = json.dumps({key: [dict(zip(names, row)) for row in rows]}, indent=1).encode()
    else:
        raise ValueError(f"plot data file must end in .csv or .json, got {path.name!r}")
    atomic_write_bytes(path, data)
    return path


def write_pr_curve(scores, targets, path, max_points: int = 500) -> Path:
    """Micro precision-recall curve (all (video, label) pairs) with columns precision, recall,
    threshold, downsampled to ≤ ``max_points`` points (DVC: ``x: recall, y: precision``).
    """
    precision, recall, thresholds = pr_curve(scores, targets)
    keep = downsample_indices(len(precision), max_points)
    return write_curve(
        {"precision": precision[keep], "recall": recall[keep], "threshold": thresholds[keep]}, path, key="pr"
    )


def write_f1_threshold_curve(
    scores, targets, path, thresholds=None, average: str = "micro", n_points: int = 201
) -> Path:
    """F1 vs a single global threshold (paper Fig. 6 data) with columns threshold, f1.

    Args:
        thresholds: grid (≤ 500 points advised); default ``n_points`` evenly spaced over the
            score range — pass one shared grid to make several splits' curves line up.
        average: "micro" or "macro" (see :mod:`ovc.evaluate.metrics`).
    """
    s, t = check_inputs(scores, targets)
    if thresholds is None:
        lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
        thresholds = np.linspace(lo, hi, n_points)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    return write_curve({"threshold": thresholds, "f1": f1_curve(s, t, thresholds, average)}, path, key="f1")


def _save_png(fig, out_png) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(out_png, buf.getvalue())
    return Path(out_png)


def _new_axes():
    """A figure on the Agg canvas without pyplot: no global backend switch, no open windows,
    nothing left to close (safe in DVC stages, Ray workers and tests)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def plot_f1_vs_threshold(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    calibrated_threshold: float | None,
    out_png,
    title: str | None = None,
) -> Path:
    """Paper Fig. 6: F1 vs threshold, one line per split, grey vertical line at the calibrated
    threshold (§4.5).

    Args:
        curves: split name -> (thresholds, f1).
        calibrated_threshold: drawn as a grey vertical line (skipped when None/NaN).
        out_png: output path.
    """
    fig, ax = _new_axes()
    for name, (thr, f1) in curves.items():
        ax.plot(np.asarray(thr, dtype=float), np.asarray(f1, dtype=float), label=name, linewidth=1.6)
    if calibrated_threshold is not None and np.isfinite(calibrated_threshold):
        ax.axvline(
            float(calibrated_threshold),
            color="grey",
            linestyle="-",
            linewidth=1.2,
            label=f"calibrated ({calibrated_threshold:.3g})",
        )
    ax.set_xlabel("threshold")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save_png(fig, out_png)


def plot_pr_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    out_png,
    aupr: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Precision-recall curves, one line per split or method.

    Args:
        curves: name -> (precision, recall), e.g. from :func:`ovc.evaluate.metrics.pr_curve`.
        out_png: output path.
        aupr: optional name -> AUPR shown in the legend.
    """
    fig, ax = _new_axes()
    for name, (precision, recall) in curves.items():
        label = name if not aupr or name not in aupr else f"{name} (AUPR {100 * aupr[name]:.1f})"
        ax.step(
            np.asarray(recall, dtype=float),
            np.asarray(precision, dtype=float),
            where="post",
            label=label,
            linewidth=1.4,
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save_png(fig, out_png)


def plot_train_curve(columns: Mapping[str, ArrayLike], out_png, title: str | None = None) -> Path:
    """A training curve: the per-step loss (left axis) and the val AUPR, macro and micro (right
    axis, [0, 1]), against the optimizer step.

    Args:
        columns: ``step``, ``loss``, ``val_aupr_macro``, ``val_aupr_micro`` of equal length, NaN
            where a step has no value (:func:`ovc.evaluate.curves.curve_columns`).
        out_png: output path.
    """
    fig, ax = _new_axes()
    step = np.asarray(columns["step"], dtype=float)
    loss = np.asarray(columns["loss"], dtype=float)
    has_loss = np.isfinite(loss)
    ax.plot(step[has_loss], loss[has_loss], color="tab:grey", linewidth=1.0, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    for key, color in (("val_aupr_macro", "tab:blue"), ("val_aupr_micro", "tab:orange")):
        v = np.asarray(columns[key], dtype=float)
        has = np.isfinite(v)  # evaluated every train.eval_every steps only
        right.plot(step[has], v[has], color=color, marker="o", markersize=3, linewidth=1.6, label=key)
    right.set_ylabel("val AUPR")
    right.set_ylim(0, 1)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    if title:
        ax.set_title(title)
    return _save_png(fig, out_png)
