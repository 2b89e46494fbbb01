"""Global threshold calibration across datasets (paper §4.5).

"A reasonable choice for a classification threshold would be to pick the threshold that maximizes
the minimum validation F1-score for the datasets used in training." We do exactly that: for each
candidate threshold t, compute F1(t) on every calibration dataset (e.g. the closed-vocabulary val
split(s)), take the minimum over datasets, and return the t with the largest minimum.

Threshold grid (``thresholds=None``):

- **exact** (default when the pooled number of distinct scores is ≤ ``max_candidates``): the
  union of all distinct score values. Every dataset's F1 is a step function that changes only at
  its own score values (``predict iff score >= t``), so the min-F1 is maximised on this set. The
  returned threshold is then moved to the midpoint between the winning candidate and the next
  lower candidate: that selects exactly the same pairs on the calibration data (no score lies
  strictly between), but leaves a margin on both sides for unseen data.
- **grid** (more distinct scores): per-dataset score quantiles ∪ an evenly spaced grid over
  [min, max] of the pooled scores. Quantiles follow where the scores actually are (probabilities
  σ(s/τ) bunch up near 0; raw cosines sit in a narrow band of [-1, 1]); the even grid covers the
  gaps. Works for any score scale.

Ties in min-F1 are broken by the larger mean F1 across datasets, then the highest threshold.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ovc.evaluate.metrics import check_inputs, f1_curve

__all__ = ["CalibrationError", "candidate_thresholds", "calibrate_threshold"]


class CalibrationError(ValueError):
    """No usable calibration dataset (none given, or none with a positive)."""


def candidate_thresholds(
    score_arrays: list[np.ndarray], max_candidates: int = 20000, n_even: int = 1001
) -> tuple[np.ndarray, str]:
    """Candidate thresholds (ascending) for calibration, and which mode produced them.

    Args:
        score_arrays: score matrices of the calibration datasets (any shapes).
        max_candidates: use the exact union of distinct scores up to this many values.
        n_even: points of the evenly spaced part of the fallback grid.

    Returns:
        (thresholds ascending, "exact" | "grid").
    """
    pooled = np.unique(np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in score_arrays]))
    if len(pooled) <= max_candidates:
        return pooled, "exact"
    per_dataset = max(2, (max_candidates - n_even) // max(1, len(score_arrays)))
    quantiles = [np.quantile(np.asarray(a, dtype=np.float64), np.linspace(0, 1, per_dataset)) for a in score_arrays]
    even = np.linspace(pooled[0], pooled[-1], n_even)
    return np.unique(np.concatenate([even, *quantiles])), "grid"


def calibrate_threshold(
    datasets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    thresholds=None,
    average: str = "micro",
    max_candidates: int = 20000,
) -> tuple[float, dict]:
    """Threshold maximising the minimum F1 across calibration datasets (paper §4.5).

    Args:
        datasets: name -> (scores (V, L), targets (V, L) 0/1); label sets may differ per dataset.
        thresholds: optional 1-D grid to search; default: see the module docstring.
        average: "micro" or "macro" F1 (as in :mod:`ovc.evaluate.metrics`; one shared threshold).
        max_candidates: cap on the exact candidate set before falling back to a grid.

    Returns:
        (threshold, details) where details has: ``average``, ``grid_mode`` ("exact" | "grid" |
        "given"), ``thresholds`` (the searched grid, ascending), ``f1`` {name: F1 per grid point},
        ``min_f1`` (min over datasets per grid point), ``f1_at_threshold`` {name: F1 at the
        returned threshold}, ``min_f1_at_threshold``, ``datasets_used``, ``datasets_skipped``
        {name: reason} (datasets with no positive cannot constrain a threshold).

    Raises:
        CalibrationError: when no dataset has a positive.
        MetricsInputError: on bad scores/targets (naming the dataset).
    """
    if average not in ("micro", "macro"):
        raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")
    usable: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for name, pair in datasets.items():
        try:
            s, t = check_inputs(*pair)
        except ValueError as err:
            raise type(err)(f"calibration dataset {name!r}: {err}") from err
        if not t.any():
            skipped[name] = "no positive (video, label) pair"
            continue
        usable[name] = (s, t)
    if not usable:
        raise CalibrationError(f"no calibration dataset with a positive among {sorted(datasets)} (skipped: {skipped})")

    if thresholds is None:
        grid, mode = candidate_thresholds([s for s, _ in usable.values()], max_candidates=max_candidates)
    else:
        grid = np.unique(np.asarray(thresholds, dtype=np.float64).reshape(-1))
        if len(grid) == 0 or not np.isfinite(grid).all():
            raise ValueError("thresholds must be a non-empty array of finite numbers")
        mode = "given"

    f1 = {name: f1_curve(s, t, grid, average) for name, (s, t) in usable.items()}
    stacked = np.stack(list(f1.values()))  # (D, G)
    min_f1 = stacked.min(axis=0)  # (G,)
    mean_f1 = stacked.mean(axis=0)  # (G,)
    best_min = min_f1.max()
    tied = np.flatnonzero(min_f1 == best_min)
    best_mean = mean_f1[tied].max()
    tied = tied[mean_f1[tied] == best_mean]
    best = int(tied[-1])  # highest threshold among exact ties
    threshold = float(grid[best])
    if mode == "exact" and best > 0:
        # same predictions on the calibration data (no score strictly between), with a margin.
        mid = float(0.5 * (grid[best] + grid[best - 1]))
        if grid[best - 1] < mid <= grid[best]:  # adjacent floats can round the midpoint down
            threshold = mid

    f1_at = {name: float(f1_curve(s, t, [threshold], average)[0]) for name, (s, t) in usable.items()}
    details = {
        "average": average,
        "grid_mode": mode,
        "thresholds": grid,
        "f1": f1,
        "min_f1": min_f1,
        "f1_at_threshold": f1_at,
        "min_f1_at_threshold": float(min(f1_at.values())),
        "datasets_used": list(usable),
        "datasets_skipped": skipped,
    }
    return threshold, details
