"""Evaluation library (paper §4.3, §4.5): metrics, threshold calibration, plots, results tables.

- :mod:`ovc.evaluate.metrics` — AUPR (sklearn-exact AP; macro over labels with ≥1 positive, micro)
  and peak F1 (oracle single global threshold; micro and macro), F1 curves.
- :mod:`ovc.evaluate.calibration` — global threshold maximising the minimum validation F1 (§4.5).
- :mod:`ovc.evaluate.plots` — DVC plot data files (CSV/JSON) and PNGs (Fig. 6, PR curves).
- :mod:`ovc.evaluate.report` — Tables 1–2 style results, metrics.json, per-split score files.
- :mod:`ovc.evaluate.curves` — training-curve columns and their last-quarter flatness.
- :mod:`ovc.evaluate.scoring` — a split's videos and targets, a method's scores on them (torch; shared
  by the evaluate stage and the train loop's val curve).

Pure numpy (+ pandas for tables, matplotlib Agg for PNGs, both imported on use), except
:mod:`ovc.evaluate.scoring`, which this package does not import.
"""

from ovc.evaluate.calibration import CalibrationError, calibrate_threshold
from ovc.evaluate.metrics import (
    MetricsInputError,
    aupr_macro,
    aupr_micro,
    compute_metrics,
    f1_at_threshold,
    f1_curve,
    peak_f1_macro,
    peak_f1_micro,
    pr_curve,
)

__all__ = [
    "CalibrationError",
    "MetricsInputError",
    "aupr_macro",
    "aupr_micro",
    "calibrate_threshold",
    "compute_metrics",
    "f1_at_threshold",
    "f1_curve",
    "peak_f1_macro",
    "peak_f1_micro",
    "pr_curve",
]
