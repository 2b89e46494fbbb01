"""Results tables (paper Tables 1–2), metrics.json and per-split score files.

Shapes the ``evaluate`` stage writes:

- ``metrics.json`` (DVC metrics)::

    {split: {method: {aupr_macro, aupr_micro, peak_f1_micro, peak_f1_macro, f1_at_calibrated,
                      aupr_macro_novel, aupr_micro_novel, novel_labels (AUPR over the labels never
                      in the training vocabulary; null where a split has none),
                      ...optional extra numbers}},
     "calibrated_threshold": float}

  Values are fractions in [0, 1] (tables show ×100); NaN (undefined, e.g. a split with no
  positive) is written as null. ``calibrated_threshold`` is null only when calibration was
  impossible.
- ``scores/<split>/<method>.npz``: arrays ``scores`` (float32, videos × labels), ``targets``
  (uint8 0/1), ``labels`` (str) — read back with ``allow_pickle=False``.

Tables: methods × splits, values ×100 with 1 decimal like the paper, closed-vocabulary splits
first, then open-vocabulary ones (``open_*``), method rows in the paper's order.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ovc.evaluate.metrics import check_inputs
from ovc.evaluate.plots import atomic_write_bytes
from ovc.models.methods import DISPLAY_NAMES

__all__ = [
    "METRIC_KEYS",
    "METRIC_TITLES",
    "METHOD_DISPLAY_NAMES",
    "SPLIT_DISPLAY_NAMES",
    "MetricsFormatError",
    "ScoreFile",
    "order_splits",
    "order_methods",
    "results_table",
    "table_to_markdown",
    "results_markdown",
    "write_results_tables",
    "to_jsonable",
    "validate_metrics",
    "write_metrics_json",
    "load_metrics_json",
    "save_scores",
    "load_scores",
]

#: Keys every (split, method) entry of metrics.json must have.
METRIC_KEYS = ("aupr_macro", "aupr_micro", "peak_f1_micro", "peak_f1_macro", "f1_at_calibrated")
#: Top-level keys of metrics.json that are not splits.
RESERVED_KEYS = ("calibrated_threshold",)

METRIC_TITLES = {
    "aupr_macro": "AUPR (macro: mean AP over labels with ≥1 positive)",
    "aupr_micro": "AUPR (micro: AP over all video-label pairs)",
    "peak_f1_micro": "Peak F1 (micro, oracle global threshold per split)",
    "peak_f1_macro": "Peak F1 (macro over labels with ≥1 positive, oracle global threshold per split)",
    "f1_at_calibrated": "F1 at the calibrated global threshold (paper §4.5)",
    "aupr_macro_novel": "AUPR (macro) over novel labels only (never in the training vocabulary; – where a split has none)",
    "aupr_micro_novel": "AUPR (micro) over novel labels only",
    "aupr_macro_known": "AUPR (macro) over the split's training-vocabulary labels only (on Synonyms: the base words)",
}

#: Method keys (as the evaluate stage names them) -> row names, in the paper's row order
#: (from the one method registry, :data:`ovc.models.methods.METHODS`).
METHOD_DISPLAY_NAMES = dict(DISPLAY_NAMES)

#: Split keys -> column names; known closed splits first, then open ones.
SPLIT_DISPLAY_NAMES = {
    "train": "Train (closed)",
    "val": "Val (closed)",
    "open_entities": "Entities (open)",
    "open_actions": "Unrelated actions (open)",
    "open_rare": "Rare combos (open)",
    "open_synonyms": "Synonyms (open)",
    "open_temporal": "Temporal twins (left/right, up/down, grow/shrink)",
    "open_actions_related": "Related actions (open)",
}


class MetricsFormatError(ValueError):
    """metrics.json content that does not have the agreed shape (names the split/method/key)."""


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def order_splits(splits: Sequence[str]) -> list[str]:
    """Closed-vocabulary splits first, then open ones (``open_*``); known names in canonical
    order, unknown ones after them alphabetically within their group."""
    known = list(SPLIT_DISPLAY_NAMES)

    def key(split: str):
        is_open = split.startswith("open_")
        return (is_open, known.index(split) if split in known else len(known), split)

    return sorted(splits, key=key)


def order_methods(methods: Sequence[str]) -> list[str]:
    """Known methods in the paper's row order, then unknown ones in their given order."""
    known = list(METHOD_DISPLAY_NAMES)
    first = [m for m in known if m in methods]
    return first + [m for m in methods if m not in known]


def _split_entries(metrics: Mapping) -> dict[str, Mapping]:
    return {k: v for k, v in metrics.items() if k not in RESERVED_KEYS and isinstance(v, Mapping)}


def results_table(
    metrics: Mapping,
    metric: str = "aupr_macro",
    scale: float = 100.0,
    decimals: int | None = 1,
    display_names: Mapping[str, str] | None = None,
):
    """Methods × splits table of one metric (paper Tables 1–2).

    Args:
        metrics: ``{split: {method: {metric: value}}}`` (extra top-level keys such as
            ``calibrated_threshold`` are ignored).
        metric: which metric key to tabulate.
        scale: multiply values (100 → percentages like the paper).
        decimals: round to this many decimals (None: no rounding).
        display_names: method key -> row name overrides (default :data:`METHOD_DISPLAY_NAMES`;
            unknown keys keep their key).

    Returns:
        pandas.DataFrame, index = method row names, columns = split keys (ordered by
        :func:`order_splits`); NaN where a method has no value for a split.
    """
    import pandas as pd

    entries = _split_entries(metrics)
    splits = order_splits(list(entries))
    methods: list[str] = []
    for split in splits:
        methods += [m for m in entries[split] if m not in methods]
    methods = order_methods(methods)
    names = {**METHOD_DISPLAY_NAMES, **(display_names or {})}
    data = np.full((len(methods), len(splits)), np.nan)
    for j, split in enumerate(splits):
        for i, method in enumerate(methods):
            value = entries[split].get(method, {}).get(metric)
            if value is not None:
                data[i, j] = float(value) * scale
    if decimals is not None:
        data = np.round(data, decimals)
    df = pd.DataFrame(data, index=[names.get(m, m) for m in methods], columns=splits)
    df.index.name = "method"
    df.columns.name = metric
    return df


def table_to_markdown(df, decimals: int = 1, bold_best: bool = True, missing: str = "–") -> str:
    """Render a :func:`results_table` as a GitHub markdown table (README-ready).

    Split columns get their display names (:data:`SPLIT_DISPLAY_NAMES`); the best value of each
    column is bold when ``bold_best``; missing values show as ``missing``.
    """
    cols = list(df.columns)
    header = ["Method"] + [
        SPLIT_DISPLAY_NAMES.get(c, f"{c} (open)" if str(c).startswith("open_") else str(c)) for c in cols
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(cols)) + "|"]
    best = {c: (np.nanmax(df[c].to_numpy()) if df[c].notna().any() else None) for c in cols}
    for name, row in df.iterrows():
        cells = [str(name)]
        for c in cols:
            v = row[c]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append(missing)
                continue
            text = f"{v:.{decimals}f}"
            cells.append(f"**{text}**" if bold_best and len(df) > 1 and v == best[c] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_markdown(
    metrics: Mapping,
    metric_names: Sequence[str] = ("aupr_macro", "peak_f1_micro"),
    display_names: Mapping[str, str] | None = None,
    heading_level: int = 3,
) -> str:
    """README-ready markdown: one titled table per metric (×100, 1 decimal), plus the calibrated
    threshold when present."""
    parts = []
    for metric in metric_names:
        df = results_table(metrics, metric, display_names=display_names)
        title = METRIC_TITLES.get(metric, metric)
        parts.append(f"{'#' * heading_level} {title}, ×100\n\n{table_to_markdown(df)}")
    thr = metrics.get("calibrated_threshold") if isinstance(metrics, Mapping) else None
    if thr is not None:
        parts.append(
            f"Calibrated global threshold (max of the minimum validation F1, paper §4.5): `{float(thr):.4g}`\n"
        )
    return "\n".join(parts)


def write_results_tables(
    metrics: Mapping,
    out_dir,
    metric_names: Sequence[str] = (
        "aupr_macro",
        "aupr_macro_novel",
        "aupr_macro_known",
        "aupr_micro",
        "aupr_micro_novel",
        "peak_f1_micro",
        "peak_f1_macro",
    ),
    display_names: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``results_<metric>.csv`` / ``.md`` per metric and a combined ``results.md``.

    Values ×100, 1 decimal (like the paper); CSV leaves missing cells empty.

    Returns:
        file kind -> path, e.g. ``{"aupr_macro.csv": ..., "aupr_macro.md": ..., "results.md": ...}``.
    """
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for metric in metric_names:
        df = results_table(metrics, metric, display_names=display_names)
        buf = io.StringIO()
        df.to_csv(buf, float_format="%.1f")
        path = out_dir / f"results_{metric}.csv"
        atomic_write_bytes(path, buf.getvalue().encode())
        written[f"{metric}.csv"] = path
        md = f"**{METRIC_TITLES.get(metric, metric)}, ×100**\n\n{table_to_markdown(df)}"
        path = out_dir / f"results_{metric}.md"
        atomic_write_bytes(path, md.encode())
        written[f"{metric}.md"] = path
    path = out_dir / "results.md"
    atomic_write_bytes(path, results_markdown(metrics, metric_names, display_names).encode())
    written["results.md"] = path
    return written


# --------------------------------------------------------------------------------------------
# metrics.json
# --------------------------------------------------------------------------------------------


def to_jsonable(obj):
    """numpy scalars/arrays -> Python, NaN/±inf -> None, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    return obj


def _is_number_or_null(v) -> bool:
    if v is None:
        return True
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v)


def validate_metrics(obj) -> None:
    """Check the metrics.json shape (see module docstring).

    Raises:
        MetricsFormatError: naming the first bad split/method/key.
    """
    if not isinstance(obj, Mapping):
        raise MetricsFormatError(f"metrics must be a JSON object, got {type(obj).__name__}")
    if "calibrated_threshold" not in obj:
        raise MetricsFormatError("metrics: missing top-level key 'calibrated_threshold'")
    if not _is_number_or_null(obj["calibrated_threshold"]):
        raise MetricsFormatError(
            f"metrics: calibrated_threshold must be a finite number or null, got {obj['calibrated_threshold']!r}"
        )
    splits = [k for k in obj if k not in RESERVED_KEYS]
    if not splits:
        raise MetricsFormatError("metrics: no split entries")
    for split in splits:
        methods = obj[split]
        if not isinstance(methods, Mapping) or not methods:
            raise MetricsFormatError(f"metrics[{split!r}]: must be a non-empty object of methods")
        for method, values in methods.items():
            where = f"metrics[{split!r}][{method!r}]"
            if not isinstance(values, Mapping):
                raise MetricsFormatError(f"{where}: must be an object of metric values")
            missing = [k for k in METRIC_KEYS if k not in values]
            if missing:
                raise MetricsFormatError(f"{where}: missing {missing}")
            for key, v in values.items():
                if not _is_number_or_null(v):
                    raise MetricsFormatError(f"{where}[{key!r}]: must be a finite number or null, got {v!r}")


def write_metrics_json(metrics: Mapping, path) -> Path:
    """Validate and write metrics.json atomically (NaN/inf -> null, numpy -> Python)."""
    clean = to_jsonable(metrics)
    validate_metrics(clean)
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(clean, indent=2, allow_nan=False) + "\n").encode())
    return path


def load_metrics_json(path) -> dict:
    """Read and validate metrics.json (nulls stay None)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MetricsFormatError(f"{path}: not valid JSON: {err}") from err
    try:
        validate_metrics(obj)
    except MetricsFormatError as err:
        raise MetricsFormatError(f"{path}: {err}") from err
    return obj


# --------------------------------------------------------------------------------------------
# Raw scores per (split, method)
# --------------------------------------------------------------------------------------------


class ScoreFile(NamedTuple):
    """Contents of a scores ``.npz``."""

    scores: np.ndarray  # (V, L) float32
    targets: np.ndarray  # (V, L) uint8 0/1
    labels: list[str]  # L label names


def save_scores(path, scores, targets, labels: Sequence[str]) -> Path:
    """Write raw scores atomically as ``.npz`` (arrays scores float32, targets uint8, labels str).

    Compute the metrics you store from ``scores.astype(np.float32)`` (what is saved), so they can
    be recomputed from the file bit for bit.

    Raises:
        MetricsInputError: on shape mismatch, non-finite scores or non-0/1 targets (naming the label).
    """
    labels = [str(x) for x in labels]
    s, t = check_inputs(scores, targets, labels)
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError(f"duplicate label names in scores file {path}: {dup[:5]}")
    s32 = s.astype(np.float32)
    if not np.isfinite(s32).all():
        col = int(np.flatnonzero(~np.isfinite(s32).all(axis=0))[0])
        raise ValueError(f"score overflows float32 in label {labels[col]!r} (column {col})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: numpy does not append ".npz"
            np.savez_compressed(
                f, scores=s32, targets=t.astype(np.uint8), labels=np.asarray(labels, dtype=np.str_).reshape(-1)
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_scores(path) -> ScoreFile:
    """Read a scores ``.npz`` written by :func:`save_scores` (``allow_pickle=False``).

    Raises:
        ValueError: naming the file when an array is missing or shapes disagree.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("scores", "targets", "labels") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}")
        scores, targets, labels = data["scores"], data["targets"], data["labels"]
    if scores.ndim != 2 or targets.shape != scores.shape or labels.shape != (scores.shape[1],):
        raise ValueError(
            f"{path}: inconsistent shapes scores {scores.shape}, targets {targets.shape}, labels {labels.shape}"
        )
    return ScoreFile(scores=scores, targets=targets, labels=[str(x) for x in labels])
