"""Stage ``train``: train every method of ``train.methods`` (Ray Train, resuming where a run
stopped; the loop is :mod:`ovc.train.loop`) and write a summary of the runs, and per method its
training curve (loss per step, val AUPR every ``train.eval_every`` steps) as a DVC plot
(``plots/train_curve_<method>.csv`` and ``.png`` in the trained-models directory).
"""

from __future__ import annotations

from typing import Any

from ovc.config import Config
from ovc.fileio import atomic_write_json
from ovc.paths import DataLayout
from ovc.train.loop import train_methods

FLAT_WINDOW = 0.25  # the summary's flatness is measured over the last quarter of training


def train(cfg: Config) -> dict[str, Any]:
    """Stage ``train``: train every method in ``cfg.train.methods`` (resuming where a run stopped)."""
    from ovc.evaluate.curves import curve_columns, flatness
    from ovc.evaluate.plots import plot_train_curve, write_curve

    layout = DataLayout.of(cfg)
    results = {}
    for method, r in train_methods(cfg, list(cfg.train.methods)).items():
        curve = r["curve"]
        columns = curve_columns(curve)
        write_curve(columns, layout.train_curve(method))
        plot_train_curve(columns, layout.train_curve_png(method), title=f"{method}: training curve")
        flat = flatness(curve, FLAT_WINDOW, key="val_aupr_macro")
        evaluated = [row for row in curve if row.get("val_aupr_macro") is not None]
        results[method] = {
            "final_loss": r["history"][-1]["loss"] if r["history"] else None,
            "epochs": len(r["history"]),
            "steps": max((row["step"] for row in curve), default=0),
            "final_val_aupr_macro": evaluated[-1]["val_aupr_macro"] if evaluated else None,
            "final_val_aupr_micro": evaluated[-1]["val_aupr_micro"] if evaluated else None,
            "curve_last_quarter_change": flat["change"],  # val AUPR (macro): last − value a quarter of training earlier
            "curve_last_quarter_range": flat["range"],  # max − min of val AUPR (macro) over that quarter
            "val_eval_seconds": _mean([row["val_seconds"] for row in curve if "val_seconds" in row]),
        }
    summary = {"methods": results}
    atomic_write_json(layout.train_summary, summary)
    return summary


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
