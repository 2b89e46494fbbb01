"""ovc.evaluate.calibration: the calibrated threshold maximises the minimum F1 (paper §4.5)."""

from __future__ import annotations

import numpy as np
import pytest

from ovc.evaluate.calibration import CalibrationError, calibrate_threshold
from ovc.evaluate.metrics import MetricsInputError, f1_at_threshold, peak_f1_micro


def _dataset(rng, pos_center, neg_center, n_videos=60, n_labels=8, spread=0.12, p_pos=0.2, decimals=3):
    targets = (rng.random((n_videos, n_labels)) < p_pos).astype(int)
    targets[0, 0] = 1
    centers = np.where(targets == 1, pos_center, neg_center)
    scores = centers + spread * rng.normal(size=targets.shape)
    if decimals is not None:
        scores = np.round(scores, decimals)  # ties
    return scores, targets


def _brute_force_best_min_f1(datasets, average):
    """Max over every distinct score value (and between them) of the min F1 across datasets."""
    pooled = np.unique(np.concatenate([s.ravel() for s, _ in datasets.values()]))
    candidates = np.r_[pooled, (pooled[1:] + pooled[:-1]) / 2, pooled[-1] + 1]
    return max(min(f1_at_threshold(s, t, c, average) for s, t in datasets.values()) for c in candidates)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_threshold_maximises_min_f1_when_best_thresholds_differ(average):
    rng = np.random.default_rng(0)
    datasets = {
        "high": _dataset(rng, pos_center=0.8, neg_center=0.5),  # wants a high threshold
        "low": _dataset(rng, pos_center=0.45, neg_center=0.15),  # wants a low threshold
    }
    own_best = {name: peak_f1_micro(s, t)[1] for name, (s, t) in datasets.items()}
    assert own_best["high"] > own_best["low"] + 0.1  # the datasets really disagree

    threshold, details = calibrate_threshold(datasets, average=average)
    achieved = min(f1_at_threshold(s, t, threshold, average) for s, t in datasets.values())
    assert achieved == pytest.approx(_brute_force_best_min_f1(datasets, average))
    assert details["min_f1_at_threshold"] == pytest.approx(achieved)
    assert details["grid_mode"] == "exact"
    for name, (s, t) in datasets.items():
        assert details["f1_at_threshold"][name] == pytest.approx(f1_at_threshold(s, t, threshold, average))
    np.testing.assert_allclose(details["min_f1"], np.minimum(details["f1"]["high"], details["f1"]["low"]))
    assert details["min_f1"].max() == pytest.approx(achieved)


def test_raw_cosine_scores_and_grid_fallback():
    rng = np.random.default_rng(1)
    # raw cosines: negative values, a narrow band, unrounded -> 960 distinct values
    datasets = {
        "a": _dataset(rng, 0.30, 0.20, spread=0.04, decimals=None),
        "b": _dataset(rng, 0.10, -0.05, spread=0.04, decimals=None),
    }
    _, exact = calibrate_threshold(datasets)
    _, grid = calibrate_threshold(datasets, max_candidates=300)
    assert grid["grid_mode"] == "grid" and len(grid["thresholds"]) <= 300 + 1001
    best = _brute_force_best_min_f1(datasets, "micro")
    assert exact["min_f1_at_threshold"] == pytest.approx(best)
    assert grid["min_f1_at_threshold"] <= best + 1e-12
    assert grid["min_f1_at_threshold"] >= best - 0.05  # a fine grid gets close to the optimum


def test_given_grid_is_used():
    rng = np.random.default_rng(2)
    datasets = {"val": _dataset(rng, 0.7, 0.3)}
    grid = np.linspace(0, 1, 11)
    threshold, details = calibrate_threshold(datasets, thresholds=grid)
    assert details["grid_mode"] == "given"
    assert threshold in grid
    assert details["min_f1_at_threshold"] == pytest.approx(max(f1_at_threshold(*datasets["val"], g) for g in grid))


def test_datasets_without_positives_are_skipped_and_all_skipped_raises():
    rng = np.random.default_rng(3)
    good = _dataset(rng, 0.7, 0.3)
    empty = (rng.random((5, 3)), np.zeros((5, 3), dtype=int))
    _, details = calibrate_threshold({"good": good, "empty": empty})
    assert details["datasets_used"] == ["good"]
    assert "empty" in details["datasets_skipped"]
    with pytest.raises(CalibrationError, match="no calibration dataset"):
        calibrate_threshold({"empty": empty})


def test_bad_dataset_is_named():
    scores = np.zeros((3, 2))
    scores[0, 1] = np.nan
    with pytest.raises(MetricsInputError, match="'broken'.*column 1"):
        calibrate_threshold({"broken": (scores, np.ones((3, 2)))})
