"""ovc.evaluate.report and ovc.evaluate.plots: tables, metrics.json, score files, plot files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from ovc.evaluate import plots, report
from ovc.evaluate.calibration import calibrate_threshold
from ovc.evaluate.metrics import MetricsInputError, compute_metrics, f1_at_threshold, f1_curve, pr_curve


def _entry(aupr_macro, peak_f1_micro=0.5):
    return {
        "aupr_macro": aupr_macro,
        "aupr_micro": 0.4,
        "peak_f1_micro": peak_f1_micro,
        "peak_f1_macro": 0.3,
        "f1_at_calibrated": 0.2,
    }


def _metrics():
    # splits and methods deliberately out of order
    return {
        "open_actions": {"ours": _entry(0.501), "clip_classname": _entry(0.3333)},
        "val": {"clip_classname": _entry(0.12345), "ours": _entry(0.2), "my_new_method": _entry(0.1)},
        "open_entities": {"ours": _entry(float("nan")), "clip_classname": _entry(0.25)},
        "calibrated_threshold": 0.42,
    }


def test_results_table_order_scale_and_missing():
    df = report.results_table(_metrics(), "aupr_macro")
    assert list(df.columns) == ["val", "open_entities", "open_actions"]  # closed first, then open
    assert list(df.index) == ["CLIP with Class name Prompt", "Ours: + Temporal Modeling", "my_new_method"]
    assert df.loc["CLIP with Class name Prompt", "val"] == 12.3
    assert df.loc["CLIP with Class name Prompt", "open_actions"] == 33.3
    assert df.loc["Ours: + Temporal Modeling", "open_actions"] == 50.1
    assert np.isnan(df.loc["Ours: + Temporal Modeling", "open_entities"])  # NaN value stays missing
    assert np.isnan(df.loc["my_new_method", "open_actions"])  # method not run on that split
    assert report.order_splits(["open_rare", "zzz_closed", "open_x", "val", "train"]) == [
        "train",
        "val",
        "zzz_closed",
        "open_rare",
        "open_x",
    ]


def test_markdown_rendering():
    md = report.table_to_markdown(report.results_table(_metrics(), "aupr_macro"))
    lines = md.strip().splitlines()
    assert (
        lines[0] == "| Method | Val (closed) | Entities (open) | Unrelated actions (open) |"
    )  # rotating, blinking: the hard case
    assert "| CLIP with Class name Prompt | 12.3 | **25.0** | 33.3 |" in lines
    assert "| Ours: + Temporal Modeling | **20.0** | – | **50.1** |" in lines
    full = report.results_markdown(_metrics())
    assert "AUPR (macro" in full and "Peak F1 (micro" in full and "0.42" in full


def test_write_results_tables(tmp_path):
    written = report.write_results_tables(_metrics(), tmp_path)
    for metric in ("aupr_macro", "aupr_micro", "peak_f1_micro", "peak_f1_macro"):
        assert written[f"{metric}.csv"].exists() and written[f"{metric}.md"].exists()
    back = pd.read_csv(written["aupr_macro.csv"], index_col="method")
    pd.testing.assert_frame_equal(back, report.results_table(_metrics(), "aupr_macro"), check_names=False)
    assert "Peak F1" in written["results.md"].read_text()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_metrics_json_nan_to_null_and_validation(tmp_path):
    metrics = _metrics()
    metrics["val"]["clip_classname"]["aupr_micro"] = np.float32(0.25)  # numpy scalars are fine
    path = report.write_metrics_json(metrics, tmp_path / "eval" / "metrics.json")
    raw = json.loads(path.read_text())
    assert raw["open_entities"]["ours"]["aupr_macro"] is None
    assert raw["calibrated_threshold"] == 0.42
    assert report.load_metrics_json(path) == raw

    bad = _metrics()
    del bad["val"]["ours"]["f1_at_calibrated"]
    with pytest.raises(report.MetricsFormatError, match=r"\['val'\]\['ours'\].*f1_at_calibrated"):
        report.write_metrics_json(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    bad = _metrics()
    bad["val"]["ours"]["aupr_macro"] = "high"
    with pytest.raises(report.MetricsFormatError, match="aupr_macro"):
        report.validate_metrics(bad)
    bad = _metrics()
    del bad["calibrated_threshold"]
    with pytest.raises(report.MetricsFormatError, match="calibrated_threshold"):
        report.validate_metrics(bad)


def test_scores_round_trip_and_metrics_recomputed_from_npz(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 6))
    targets = (rng.random((40, 6)) < 0.3).astype(int)
    labels = ["red", "circle", "moving left", "crimson", "beach", "rotating"]
    path = report.save_scores(tmp_path / "scores" / "val" / "ours.npz", scores, targets, labels)
    assert path.name == "ours.npz"  # no ".npz" appended twice

    loaded = report.load_scores(path)
    assert loaded.scores.dtype == np.float32 and loaded.targets.dtype == np.uint8
    np.testing.assert_array_equal(loaded.scores, scores.astype(np.float32))
    np.testing.assert_array_equal(loaded.targets, targets)
    assert loaded.labels == labels

    # the evaluate stage computes metrics from the float32 scores it saves
    s32 = scores.astype(np.float32)
    thr, _ = calibrate_threshold({"val": (s32, targets)})
    stored = {k: v for k, v in compute_metrics(s32, targets).items() if k in report.METRIC_KEYS}
    stored["f1_at_calibrated"] = f1_at_threshold(s32, targets, thr)
    json_path = report.write_metrics_json(
        {"val": {"ours": stored}, "calibrated_threshold": thr}, tmp_path / "metrics.json"
    )
    on_disk = report.load_metrics_json(json_path)
    recomputed = compute_metrics(loaded.scores, loaded.targets)
    for key in ("aupr_macro", "aupr_micro", "peak_f1_micro", "peak_f1_macro"):
        assert recomputed[key] == on_disk["val"]["ours"][key]
    assert (
        f1_at_threshold(loaded.scores, loaded.targets, on_disk["calibrated_threshold"])
        == on_disk["val"]["ours"]["f1_at_calibrated"]
    )


def test_save_scores_rejects_bad_input(tmp_path):
    scores = np.zeros((3, 2))
    scores[2, 1] = np.inf
    with pytest.raises(MetricsInputError, match="'dog'"):
        report.save_scores(tmp_path / "x.npz", scores, np.zeros((3, 2)), ["cat", "dog"])
    with pytest.raises(ValueError, match="label names"):
        report.save_scores(tmp_path / "x.npz", np.zeros((3, 2)), np.zeros((3, 2)), ["cat"])
    assert not list(tmp_path.iterdir())


def test_plot_data_files_for_dvc(tmp_path):
    rng = np.random.default_rng(1)
    scores = rng.random((300, 10))  # 3000 distinct values -> downsampled
    targets = (rng.random((300, 10)) < 0.1).astype(int)

    csv_path = plots.write_pr_curve(scores, targets, tmp_path / "plots" / "pr_val.csv")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"precision", "recall", "threshold"}
    assert 2 <= len(rows) <= 500
    precision, recall, thresholds = pr_curve(scores, targets)
    assert float(rows[0]["threshold"]) == pytest.approx(thresholds[0])  # both ends kept
    assert float(rows[-1]["recall"]) == pytest.approx(recall[-1])

    json_path = plots.write_pr_curve(scores, targets, tmp_path / "plots" / "pr_val.json")
    points = json.loads(json_path.read_text())["pr"]
    assert len(points) == len(rows) and set(points[0]) == {"precision", "recall", "threshold"}

    grid = np.linspace(0, 1, 51)
    f1_path = plots.write_f1_threshold_curve(scores, targets, tmp_path / "f1_val.csv", thresholds=grid)
    back = pd.read_csv(f1_path)
    np.testing.assert_allclose(back["f1"], f1_curve(scores, targets, grid), atol=1e-6)
    with pytest.raises(ValueError, match="csv or .json"):
        plots.write_curve({"x": [1.0]}, tmp_path / "curve.txt")


def test_png_plots(tmp_path):
    rng = np.random.default_rng(2)
    grid = np.linspace(0, 1, 21)
    curves = {}
    pr = {}
    for split in ("val", "open_entities"):
        scores = rng.random((50, 5))
        targets = (rng.random((50, 5)) < 0.2).astype(int)
        curves[split] = (grid, f1_curve(scores, targets, grid))
        precision, recall, _ = pr_curve(scores, targets)
        pr[split] = (precision, recall)
    fig6 = plots.plot_f1_vs_threshold(curves, 0.4, tmp_path / "f1_vs_threshold.png", title="F1")
    prs = plots.plot_pr_curves(pr, tmp_path / "pr.png", aupr={"val": 0.3})
    for png in (fig6, prs):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))
