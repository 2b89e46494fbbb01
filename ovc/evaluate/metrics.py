"""Multi-label classification metrics of paper §4.3: AUPR and peak F1, micro and macro.

Inputs everywhere are a ``scores`` matrix (videos × labels, float; probabilities σ(s/τ) or raw
cosines — only the order matters) and a ``targets`` matrix of the same shape (0/1 or bool).
Pure numpy, vectorised by sorting: every metric is O(n log n) in the number of (video, label)
pairs, so a million pairs take well under a second.

Variants (write which one each reported number is):

- ``aupr_macro``: average precision per label, mean over labels with ≥ 1 positive video (labels
  with no positive are skipped — their AP is undefined; ``n_labels_with_positives`` says how many
  were kept). ``aupr_micro``: average precision over all flattened (video, label) pairs.
- Average precision is exactly scikit-learn's ``average_precision_score``: the step-wise sum
  ``Σ_k (R_k − R_{k−1}) P_k`` over the distinct score values in decreasing order, no
  interpolation; tied scores form one operating point.
- Peak F1 (paper §4.3: "F1 at the optimal threshold chosen by an oracle for that dataset"):
  ``peak_f1_micro`` = max over one global threshold of micro-F1 over all pairs;
  ``peak_f1_macro`` = max over one global threshold, **shared by every label**, of the macro-F1
  over labels with ≥ 1 positive. One shared threshold (not one per label) because the paper's
  Fig. 6 plots F1 against a single threshold and §4.5 calibrates a single threshold; a per-label
  oracle would measure ranking, not calibration.
- Thresholds mean ``predict positive iff score >= threshold``. Candidate thresholds are the
  distinct score values (plus "above the maximum", predicting nothing, F1 = 0), which makes the
  peak exact.
- When there is no positive at all, every metric is NaN (``write_metrics_json`` writes null).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "MetricsInputError",
    "check_inputs",
    "average_precision_per_label",
    "aupr_macro",
    "aupr_micro",
    "pr_curve",
    "f1_step_function",
    "peak_f1_micro",
    "peak_f1_macro",
    "f1_at_threshold",
    "f1_curve",
    "compute_metrics",
]


class MetricsInputError(ValueError):
    """Scores/targets that metrics cannot be computed on (shape, NaN/inf, non-binary targets)."""


def _label_name(col: int, label_names: Sequence[str] | None) -> str:
    if label_names is not None and col < len(label_names):
        return f"label {label_names[col]!r} (column {col})"
    return f"column {col}"


def check_inputs(scores, targets, label_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to ``(float64 scores, bool targets)``, both 2-D (videos × labels).

    A 1-D input is treated as a single label column.

    Args:
        scores: (V, L) array-like of finite floats.
        targets: (V, L) array-like of 0/1 (or bool).
        label_names: optional L names, used only to name the offending column in errors.

    Raises:
        MetricsInputError: on shape mismatch, non-finite scores or non-binary targets, naming the
            first offending label/column.
    """
    s = np.asarray(scores)
    t = np.asarray(targets)
    if s.ndim == 1:
        s = s[:, None]  # (V,) -> (V, 1)
    if t.ndim == 1:
        t = t[:, None]  # (V,) -> (V, 1)
    if s.ndim != 2 or t.ndim != 2:
        raise MetricsInputError(f"scores and targets must be 2-D (videos × labels), got {s.shape} and {t.shape}")
    if s.shape != t.shape:
        raise MetricsInputError(f"scores shape {s.shape} != targets shape {t.shape}")
    if label_names is not None and len(label_names) != s.shape[1]:
        raise MetricsInputError(f"{len(label_names)} label names for {s.shape[1]} score columns")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise MetricsInputError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    finite = np.isfinite(s)
    if not finite.all():
        bad_cols = np.flatnonzero(~finite.all(axis=0))
        col = int(bad_cols[0])
        row = int(np.flatnonzero(~finite[:, col])[0])
        raise MetricsInputError(
            f"non-finite score {s[row, col]} at video row {row}, {_label_name(col, label_names)}"
            f" ({len(bad_cols)} column(s) affected)"
        )
    if t.dtype != np.bool_:
        if not np.issubdtype(t.dtype, np.number):
            raise MetricsInputError(f"targets must be 0/1 numbers or bool, got dtype {t.dtype}")
        binary = (t == 0) | (t == 1)
        if not binary.all():
            bad_cols = np.flatnonzero(~binary.all(axis=0))
            col = int(bad_cols[0])
            row = int(np.flatnonzero(~binary[:, col])[0])
            raise MetricsInputError(
                f"target {t[row, col]!r} is not 0/1 at video row {row}, {_label_name(col, label_names)}"
            )
        t = t.astype(bool)
    return s, t


# --------------------------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------------------------


def average_precision_per_label(scores, targets, label_names: Sequence[str] | None = None) -> np.ndarray:
    """Average precision of every label column (NaN for a column with no positive).

    Equal to ``sklearn.metrics.average_precision_score(targets[:, l], scores[:, l])`` for each
    column with ≥ 1 positive. Each positive contributes the precision at the end of its group of
    tied scores (its operating point), divided by the number of positives — the same sum as
    ``Σ_k (R_k − R_{k−1}) P_k``.

    Returns:
        (L,) float64 array.
    """
    s, t = check_inputs(scores, targets, label_names)
    n, n_cols = s.shape
    if n == 0:
        return np.full(n_cols, np.nan)
    order = np.argsort(-s, axis=0, kind="stable")  # (V, L) row indices, scores descending
    s_sorted = np.take_along_axis(s, order, axis=0)  # (V, L)
    t_sorted = np.take_along_axis(t, order, axis=0)  # (V, L)
    tps = np.cumsum(t_sorted, axis=0)  # (V, L) true positives among the top i+1
    # last row of each group of tied scores (an operating point).
    is_end = np.ones_like(t_sorted)
    is_end[:-1] = s_sorted[1:] != s_sorted[:-1]
    rank = np.arange(n)[:, None]  # (V, 1)
    end_row = np.where(is_end, rank, n)  # (V, L)
    # group end of every row = nearest end at or below it: reverse cumulative minimum.
    end_row = np.minimum.accumulate(end_row[::-1], axis=0)[::-1]  # (V, L)
    precision_at_end = np.take_along_axis(tps, end_row, axis=0) / (end_row + 1.0)  # (V, L)
    n_pos = tps[-1].astype(np.float64)  # (L,)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision_at_end * t_sorted).sum(axis=0) / n_pos
    ap[n_pos == 0] = np.nan
    return ap


def aupr_macro(scores, targets, label_names: Sequence[str] | None = None) -> tuple[float, int]:
    """Macro AUPR: mean average precision over labels with ≥ 1 positive.

    Returns:
        (aupr, n_labels_used); NaN and 0 when no label has a positive.
    """
    ap = average_precision_per_label(scores, targets, label_names)
    used = ~np.isnan(ap)
    n_used = int(used.sum())
    return (float(ap[used].mean()) if n_used else float("nan")), n_used


def aupr_micro(scores, targets, label_names: Sequence[str] | None = None) -> float:
    """Micro AUPR: average precision over all flattened (video, label) pairs (NaN if no positive)."""
    s, t = check_inputs(scores, targets, label_names)
    return float(average_precision_per_label(s.reshape(-1, 1), t.reshape(-1, 1))[0])  # (V, L) -> (V*L, 1)


# --------------------------------------------------------------------------------------------
# Operating points over all pairs (PR curve, micro F1)
# --------------------------------------------------------------------------------------------


def _micro_operating_points(s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Distinct thresholds (descending) and (tp, predicted) counts at each, over flattened pairs.

    Returns:
        thresholds (K,), tp (K,), n_predicted (K,), n_positives — predict iff score >= threshold.
    """
    flat_s = s.reshape(-1)  # (V, L) -> (V*L,)
    flat_t = t.reshape(-1)  # (V, L) -> (V*L,)
    order = np.argsort(-flat_s, kind="stable")
    s_sorted = flat_s[order]
    tps = np.cumsum(flat_t[order], dtype=np.int64)
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) if len(s_sorted) else np.zeros(0, int)
    n_pos = int(tps[-1]) if len(tps) else 0
    return s_sorted[ends], tps[ends], ends + 1, n_pos


def pr_curve(scores, targets, label_names: Sequence[str] | None = None):
    """Micro precision–recall curve over all pairs, one point per distinct score value.

    Unlike sklearn's ``precision_recall_curve`` the points are in decreasing-threshold order
    (recall non-decreasing), not truncated at full recall, and without the appended (P=1, R=0)
    point.

    Returns:
        (precision, recall, thresholds), each (K,) float64. Recall is NaN without positives.
    """
    s, t = check_inputs(scores, targets, label_names)
    thr, tp, n_pred, n_pos = _micro_operating_points(s, t)
    precision = tp / n_pred.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / float(n_pos) if n_pos else np.full(len(tp), np.nan)
    return precision, recall, thr


# --------------------------------------------------------------------------------------------
# F1 as a step function of one global threshold
# --------------------------------------------------------------------------------------------


def f1_step_function(
    scores, targets, average: str = "micro", label_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact F1 at every distinct score value used as the single global threshold.

    ``micro``: F1 = 2·TP / (#predicted + #positives) over all pairs. ``macro``: mean over labels
    with ≥ 1 positive of F1_l = 2·TP_l / (#predicted_l + #positives_l), with the same threshold
    for every label. Macro is computed in one pass over all pairs sorted by score: each pair
    changes only its own label's F1, so macro-F1 at a threshold is the cumulative sum of those
    per-pair changes (O(n log n), no per-label loop).

    Returns:
        (thresholds (K,) descending, f1 (K,)); both empty for empty input; f1 is NaN when there is
        no positive (micro) / no label with a positive (macro).
    """
    s, t = check_inputs(scores, targets, label_names)
    if average == "micro":
        thr, tp, n_pred, n_pos = _micro_operating_points(s, t)
        if n_pos == 0:
            return thr, np.full(len(thr), np.nan)
        return thr, 2.0 * tp / (n_pred + n_pos)
    if average != "macro":
        raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")

    pos_per_label = t.sum(axis=0)  # (L,)
    keep = pos_per_label > 0
    n_keep = int(keep.sum())
    if n_keep == 0:
        all_thr = np.unique(s)[::-1]
        return all_thr, np.full(len(all_thr), np.nan)
    s_k = s[:, keep]  # (V, Lk)
    t_k = t[:, keep]  # (V, Lk)
    n_pos = pos_per_label[keep].astype(np.float64)  # (Lk,)
    # Per-label counts after each pair: its rank within its column and the cumulative TP there.
    # (The order inside a group of tied scores does not matter: only group ends are read.)
    col_order = np.argsort(-s_k, axis=0, kind="stable")  # (V, Lk)
    pred_after = np.empty(s_k.shape, dtype=np.int64)  # (V, Lk) #predicted of this label incl. pair
    np.put_along_axis(pred_after, col_order, np.arange(1, s_k.shape[0] + 1)[:, None], axis=0)
    tp_after = np.empty(s_k.shape, dtype=np.int64)  # (V, Lk) TP of this label incl. pair
    np.put_along_axis(tp_after, col_order, np.cumsum(np.take_along_axis(t_k, col_order, axis=0), axis=0), axis=0)
    y = t_k.astype(np.int64)
    p = n_pos[None, :]  # (1, Lk)
    f1_after = 2.0 * tp_after / (pred_after + p)
    f1_before = 2.0 * (tp_after - y) / (pred_after - 1 + p)
    fs = s_k.reshape(-1)  # (V, Lk) -> (V*Lk,)
    order = np.argsort(-fs, kind="stable")  # global score order
    # each pair changes only its own label's F1: macro-F1 sum = cumulative sum of the changes.
    macro_sum = np.cumsum((f1_after - f1_before).reshape(-1)[order])  # (V, Lk) -> (V*Lk,)
    s_sorted = fs[order]
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    kept_thr = s_sorted[ends]
    kept_f1 = macro_sum[ends] / n_keep
    if n_keep == s.shape[1]:
        return kept_thr, kept_f1
    # thresholds from skipped labels' scores too, so the curve spans every pair.
    all_thr = np.unique(s)[::-1]
    return all_thr, _lookup_step(kept_thr, kept_f1, all_thr, empty_value=0.0)


def _lookup_step(step_thr: np.ndarray, step_f1: np.ndarray, thresholds, empty_value: float) -> np.ndarray:
    """F1 at arbitrary thresholds from the exact step function (``step_thr`` descending).

    Predicting ``score >= thr`` selects the same pairs as the smallest distinct score ≥ thr;
    above the maximum nothing is predicted (F1 = ``empty_value``).
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    asc_thr = step_thr[::-1]
    asc_f1 = step_f1[::-1]
    pos = np.searchsorted(asc_thr, thr, side="left")  # first distinct score >= thr
    out = np.full(thr.shape, empty_value, dtype=np.float64)
    hit = pos < len(asc_thr)
    out[hit] = asc_f1[pos[hit]]
    return out


def _peak(thr: np.ndarray, f1: np.ndarray) -> tuple[float, float]:
    if len(f1) == 0 or np.isnan(f1).all():
        return float("nan"), float("nan")
    best = int(np.nanargmax(f1))  # first = highest threshold among ties
    return float(f1[best]), float(thr[best])


def peak_f1_micro(scores, targets, label_names: Sequence[str] | None = None) -> tuple[float, float]:
    """Oracle peak micro-F1 over one global threshold (paper §4.3).

    Returns:
        (f1, threshold) with ``predict iff score >= threshold``; (NaN, NaN) without positives.
    """
    return _peak(*f1_step_function(scores, targets, "micro", label_names))


def peak_f1_macro(scores, targets, label_names: Sequence[str] | None = None) -> tuple[float, float]:
    """Oracle peak macro-F1 (labels with ≥ 1 positive) over one threshold shared by all labels.

    Returns:
        (f1, threshold) with ``predict iff score >= threshold``; (NaN, NaN) without positives.
    """
    return _peak(*f1_step_function(scores, targets, "macro", label_names))


def f1_at_threshold(
    scores, targets, threshold: float, average: str = "micro", label_names: Sequence[str] | None = None
) -> float:
    """F1 when predicting ``score >= threshold`` (micro over all pairs, or macro over labels with
    ≥ 1 positive). NaN when there is no positive.
    """
    s, t = check_inputs(scores, targets, label_names)
    pred = s >= threshold
    tp = (pred & t).sum(axis=0).astype(np.float64)  # (L,)
    n_pred = pred.sum(axis=0).astype(np.float64)  # (L,)
    n_pos = t.sum(axis=0).astype(np.float64)  # (L,)
    if average == "micro":
        if n_pos.sum() == 0:
            return float("nan")
        return float(2.0 * tp.sum() / (n_pred.sum() + n_pos.sum()))
    if average == "macro":
        keep = n_pos > 0
        if not keep.any():
            return float("nan")
        return float(np.mean(2.0 * tp[keep] / (n_pred[keep] + n_pos[keep])))
    raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")


def f1_curve(
    scores, targets, thresholds, average: str = "micro", label_names: Sequence[str] | None = None
) -> np.ndarray:
    """F1 at each threshold of a grid (Fig. 6-style curves), vectorised.

    Computed from the exact step function, so ``f1_curve(s, t, [x])[0] == f1_at_threshold(s, t, x)``.

    Returns:
        float64 array shaped like ``thresholds``; all NaN when there is no positive.
    """
    step_thr, step_f1 = f1_step_function(scores, targets, average, label_names)
    if len(step_f1) == 0 or np.isnan(step_f1).all():
        return np.full(np.shape(thresholds), np.nan)
    return _lookup_step(step_thr, step_f1, thresholds, empty_value=0.0)


def compute_metrics(scores, targets, label_names: Sequence[str] | None = None) -> dict:
    """All metrics of paper §4.3 for one (split, method).

    Returns:
        dict with aupr_macro, aupr_micro, peak_f1_micro, peak_f1_macro, peak_threshold_micro,
        peak_threshold_macro (floats; NaN when undefined — no positives), n_videos, n_labels,
        n_labels_with_positives, n_positive_pairs (ints).
    """
    s, t = check_inputs(scores, targets, label_names)
    macro, n_used = aupr_macro(s, t)
    f1_mi, thr_mi = peak_f1_micro(s, t)
    f1_ma, thr_ma = peak_f1_macro(s, t)
    return {
        "aupr_macro": macro,
        "aupr_micro": aupr_micro(s, t),
        "peak_f1_micro": f1_mi,
        "peak_f1_macro": f1_ma,
        "peak_threshold_micro": thr_mi,
        "peak_threshold_macro": thr_ma,
        "n_videos": int(s.shape[0]),
        "n_labels": int(s.shape[1]),
        "n_labels_with_positives": n_used,
        "n_positive_pairs": int(t.sum()),
    }


# --------------------------------------------------------------------------------------------
# Novel labels (open-vocabulary splits)
# --------------------------------------------------------------------------------------------


def novel_columns(label_names: Sequence[str], known_labels) -> list[int]:
    """Column indices of the labels never in the training vocabulary ``known_labels``."""
    known = set(known_labels)
    return [j for j, label in enumerate(label_names) if label not in known]


def novel_label_metrics(scores, targets, label_names: Sequence[str], known_labels) -> dict:
    """AUPR over the novel labels of a split only (labels never in the training vocabulary).

    An open split's vocabulary mixes training labels with new ones; its all-label AUPR is mostly
    the training labels'. These numbers keep only the new columns (same videos).

    Args:
        scores, targets: (V, L) as :func:`compute_metrics`.
        label_names: the L column labels.
        known_labels: the training vocabulary.

    Returns:
        ``aupr_macro_novel`` (mean AP over novel labels with ≥ 1 positive), ``aupr_micro_novel`` (AP
        over all (video, novel label) pairs) — NaN when the split has no novel label or none with a
        positive — the counts ``novel_labels``, ``novel_labels_with_positives``, and
        ``aupr_macro_known`` (the split's training-vocabulary labels on the same videos: on
        ``open_synonyms`` these are the base words, so novel / known is the synonym-to-base ratio).
    """
    s, t = check_inputs(scores, targets, label_names)
    cols = novel_columns(label_names, known_labels)
    known_cols = [j for j in range(s.shape[1]) if j not in set(cols)]
    out = {"aupr_macro_known": aupr_macro(s[:, known_cols], t[:, known_cols])[0] if known_cols else float("nan")}
    if not cols:
        return {
            **out,
            "aupr_macro_novel": float("nan"),
            "aupr_micro_novel": float("nan"),
            "novel_labels": 0,
            "novel_labels_with_positives": 0,
        }
    macro, n_used = aupr_macro(s[:, cols], t[:, cols])
    return {
        **out,
        "aupr_macro_novel": macro,
        "aupr_micro_novel": aupr_micro(s[:, cols], t[:, cols]),
        "novel_labels": len(cols),
        "novel_labels_with_positives": n_used,
    }
