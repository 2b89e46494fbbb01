"""Stage ``train``: train every method of ``train.methods`` (Ray Train, resuming where a run
stopped; the loop is :mod:`ovc.train.loop`) and write a summary of the runs.
"""

from __future__ import annotations

from typing import Any

from ovc.config import Config
from ovc.fileio import atomic_write_json
from ovc.paths import DataLayout
from ovc.train.loop import train_methods


def train(cfg: Config) -> dict[str, Any]:
    """Stage ``train``: train every method in ``cfg.train.methods`` (resuming where a run stopped)."""
    results = {}
    for method, r in train_methods(cfg, list(cfg.train.methods)).items():
        results[method] = {
            "final_loss": r["history"][-1]["loss"] if r["history"] else None,
            "epochs": len(r["history"]),
        }
    summary = {"methods": results}
    atomic_write_json(DataLayout.of(cfg).train_summary, summary)
    return summary
