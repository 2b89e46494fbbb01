"""The train stage: per method a training-curve CSV (DVC plot) and PNG, and the curve's flatness in
the summary; the curve's last val point is the evaluate stage's val AUPR of the final weights."""

from __future__ import annotations

import csv
import json

import pytest

from ovc.config import load_config
from ovc.evaluate.curves import flatness
from ovc.paths import DataLayout
from ovc.pipeline import run_stage
from tests.helpers import REPO_ROOT, tiny_overrides


def test_train_stage_writes_the_curve_csv_png_and_flatness(tiny_project):
    """2 epochs x 3 steps, val every 4 steps on the whole (12-video) val split: val cells at steps 0,
    4 and 6 (the end), a loss at every step but 0, AUPRs in [0, 1]."""
    cfg = load_config(
        REPO_ROOT / "params.yaml",
        tiny_overrides(
            tiny_project,
            "train.methods=[coop]",
            "train.epochs=2",
            "train.max_steps_per_epoch=3",
            "train.eval_every=4",
            "train.eval_videos=0",
            "evaluate.methods=[coop]",
            "evaluate.splits=[val]",
        ),
    )
    summary = run_stage("train", cfg)
    layout = DataLayout.of(cfg)
    path = layout.train_curve("coop")
    assert path.is_relative_to(layout.trained)  # inside the train stage's DVC output
    with path.open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["step", "loss", "val_aupr_macro", "val_aupr_micro"]
        rows = list(reader)
    assert [r["step"] for r in rows] == [str(k) for k in range(7)]
    evaluated = [int(r["step"]) for r in rows if r["val_aupr_macro"]]
    assert evaluated == [0, 4, 6] == [int(r["step"]) for r in rows if r["val_aupr_micro"]]
    assert [int(r["step"]) for r in rows if r["loss"]] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        for key in ("val_aupr_macro", "val_aupr_micro"):
            assert not r[key] or 0.0 <= float(r[key]) <= 1.0
        assert not r["loss"] or float(r["loss"]) > 0
    assert layout.train_curve_png("coop").read_bytes()[:4] == b"\x89PNG"

    entry = summary["methods"]["coop"]
    assert entry == json.loads(layout.train_summary.read_text())["methods"]["coop"]
    curve = json.loads((layout.run_dir("coop") / "curve.json").read_text())
    assert entry["steps"] == 6 and entry["val_eval_seconds"] > 0
    assert entry["curve_last_quarter_change"] == pytest.approx(flatness(curve)["change"])
    assert entry["curve_last_quarter_range"] == pytest.approx(flatness(curve)["range"])
    last = {k: float(v) for k, v in rows[-1].items() if k.startswith("val_")}
    assert entry["final_val_aupr_macro"] == pytest.approx(last["val_aupr_macro"], abs=1e-6)

    # the last point scores the final weights on val exactly as the evaluate stage does
    run_stage("evaluate", cfg)
    metrics = json.loads(layout.eval_metrics.read_text())
    assert metrics["val"]["coop"]["aupr_macro"] == pytest.approx(last["val_aupr_macro"], abs=1e-5)
    assert metrics["val"]["coop"]["aupr_micro"] == pytest.approx(last["val_aupr_micro"], abs=1e-5)
