"""ovc.evaluate.metrics: hand-checked cases and cross-checks against scikit-learn (dev dependency)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from ovc.evaluate import metrics as M


def _random_case(rng, n_videos, n_labels, p_pos=0.3, decimals=1):
    """Scores rounded to ``decimals`` so there are many ties; ≥ 2 labels (sklearn reads an
    (n, 1) indicator matrix as binary, not multilabel)."""
    scores = np.round(rng.random((n_videos, n_labels)), decimals)
    targets = (rng.random((n_videos, n_labels)) < p_pos).astype(np.int64)
    return scores, targets


# ------------------------------------------------------------------------------ hand-checked


def test_hand_checked_single_label():
    # sorted scores 0.9(+) 0.8(-) 0.3(+) 0.1(-): AP = (1/1 + 2/3) / 2; F1 at >=0.3: 2·2/(3+2) = 0.8
    scores = np.array([0.1, 0.9, 0.3, 0.8])
    targets = np.array([0, 1, 1, 0])
    assert M.aupr_micro(scores, targets) == pytest.approx((1 + 2 / 3) / 2)
    f1, thr = M.peak_f1_micro(scores, targets)
    assert f1 == pytest.approx(0.8)
    assert thr == pytest.approx(0.3)
    assert M.f1_at_threshold(scores, targets, 0.85) == pytest.approx(2 / 3)  # tp 1, 1 predicted, 2 pos


def test_hand_checked_ties_are_one_operating_point():
    # 0.5(+) 0.5(-) tie -> one point P=1/2, R=1/2; then 0.2(+) -> P=2/3, R=1
    scores = np.array([0.5, 0.5, 0.2])
    targets = np.array([1, 0, 1])
    assert M.aupr_micro(scores, targets) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    precision, recall, thr = M.pr_curve(scores, targets)
    np.testing.assert_allclose(precision, [0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 1.0])
    np.testing.assert_allclose(thr, [0.5, 0.2])


def test_hand_checked_macro_micro_two_labels():
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.1]])
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    ap_a = (1 + 2 / 3) / 2  # column a as in the single-label case
    ap_b = 1.0  # column b: its one positive has the top score
    macro, n_used = M.aupr_macro(scores, targets)
    assert n_used == 2
    assert macro == pytest.approx((ap_a + ap_b) / 2)
    # one shared threshold 0.7: a predicts {0.9, 0.8} -> F1 2/4; b predicts {0.7} -> F1 1
    assert M.f1_at_threshold(scores, targets, 0.7, "macro") == pytest.approx((0.5 + 1.0) / 2)
    f1_macro, thr_macro = M.peak_f1_macro(scores, targets)
    assert f1_macro == pytest.approx(0.75)
    assert thr_macro == pytest.approx(0.7)


# ------------------------------------------------------------------------------ sklearn cross-checks


@pytest.mark.parametrize("seed", range(8))
def test_average_precision_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    scores, targets = _random_case(rng, int(rng.integers(2, 60)), int(rng.integers(2, 12)))
    targets[0, 0] = 1  # at least one positive overall
    with_pos = targets.sum(axis=0) > 0
    per_label = M.average_precision_per_label(scores, targets)
    for col in np.flatnonzero(with_pos):
        assert per_label[col] == pytest.approx(average_precision_score(targets[:, col], scores[:, col]))
    assert np.isnan(per_label[~with_pos]).all()
    macro, n_used = M.aupr_macro(scores, targets)
    assert n_used == int(with_pos.sum())
    expected_macro = average_precision_score(targets[:, with_pos], scores[:, with_pos], average="macro")
    assert macro == pytest.approx(expected_macro)
    assert M.aupr_micro(scores, targets) == pytest.approx(average_precision_score(targets, scores, average="micro"))


@pytest.mark.parametrize("seed", range(8))
def test_peak_f1_micro_matches_precision_recall_curve(seed):
    rng = np.random.default_rng(100 + seed)
    scores, targets = _random_case(rng, int(rng.integers(2, 60)), int(rng.integers(2, 12)), decimals=2)
    targets[0, 0] = 1
    precision, recall, _ = precision_recall_curve(targets.ravel(), scores.ravel())
    with np.errstate(invalid="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    peak, thr = M.peak_f1_micro(scores, targets)
    assert peak == pytest.approx(f1.max())
    assert M.f1_at_threshold(scores, targets, thr, "micro") == pytest.approx(peak)
    assert f1_score(targets, (scores >= thr).astype(int), average="micro") == pytest.approx(peak)


@pytest.mark.parametrize("seed", range(8))
def test_peak_f1_macro_matches_brute_force_sklearn(seed):
    rng = np.random.default_rng(200 + seed)
    scores, targets = _random_case(rng, int(rng.integers(2, 40)), int(rng.integers(2, 10)))
    targets[0, 0] = 1
    labels_with_pos = np.flatnonzero(targets.sum(axis=0) > 0)
    brute = [
        f1_score(targets, (scores >= t).astype(int), average="macro", labels=labels_with_pos, zero_division=0)
        for t in np.unique(scores)
    ]
    peak, thr = M.peak_f1_macro(scores, targets)
    assert peak == pytest.approx(max(brute))
    assert M.f1_at_threshold(scores, targets, thr, "macro") == pytest.approx(peak)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_f1_at_threshold_and_curve_match_sklearn(average):
    rng = np.random.default_rng(7)
    scores, targets = _random_case(rng, 50, 6)
    labels_with_pos = np.flatnonzero(targets.sum(axis=0) > 0)
    grid = np.r_[np.unique(scores), np.unique(scores) + 0.05, -1.0, 2.0]  # on, between, outside
    curve = M.f1_curve(scores, targets, grid, average)
    for thr, value in zip(grid, curve):
        kwargs = {"labels": labels_with_pos} if average == "macro" else {}
        expected = f1_score(targets, (scores >= thr).astype(int), average=average, zero_division=0, **kwargs)
        assert value == pytest.approx(expected)
        assert M.f1_at_threshold(scores, targets, thr, average) == pytest.approx(value)
    assert curve[grid == 2.0][0] == 0.0  # above every score: nothing predicted


def test_larger_input_peaks_are_consistent():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(2000, 100)).astype(np.float32)  # raw-cosine-like, float32
    targets = rng.random((2000, 100)) < 0.02
    scores[targets] += 1.0
    for average, peak_fn in (("micro", M.peak_f1_micro), ("macro", M.peak_f1_macro)):
        peak, thr = peak_fn(scores, targets)
        assert M.f1_at_threshold(scores, targets, thr, average) == pytest.approx(peak)
        probe = np.quantile(scores, np.linspace(0.5, 1, 101))
        assert (M.f1_curve(scores, targets, probe, average) <= peak + 1e-12).all()


def test_compute_metrics_keys_and_values():
    rng = np.random.default_rng(11)
    scores, targets = _random_case(rng, 30, 5)
    targets[:, 4] = 0  # one label without positives -> skipped in macro
    targets[0, 0] = 1
    out = M.compute_metrics(scores, targets)
    assert set(out) >= {
        "aupr_macro",
        "aupr_micro",
        "peak_f1_micro",
        "peak_f1_macro",
        "peak_threshold_micro",
        "peak_threshold_macro",
        "n_videos",
        "n_labels",
        "n_labels_with_positives",
    }
    assert (out["n_videos"], out["n_labels"], out["n_labels_with_positives"]) == (30, 5, 4)
    assert out["aupr_macro"] == pytest.approx(average_precision_score(targets[:, :4], scores[:, :4], average="macro"))


# ------------------------------------------------------------------------------ edge cases


def test_no_positives_gives_nan():
    scores = np.random.default_rng(0).random((5, 3))
    out = M.compute_metrics(scores, np.zeros((5, 3), dtype=int))
    for key in ("aupr_macro", "aupr_micro", "peak_f1_micro", "peak_f1_macro", "peak_threshold_micro"):
        assert np.isnan(out[key]), key
    assert out["n_labels_with_positives"] == 0
    assert np.isnan(M.f1_at_threshold(scores, np.zeros((5, 3)), 0.5))
    assert np.isnan(M.f1_curve(scores, np.zeros((5, 3)), [0.1, 0.5], "macro")).all()


def test_all_scores_equal():
    scores = np.full((4, 2), 0.3)
    targets = np.array([[1, 0], [0, 0], [0, 1], [0, 0]])
    # one operating point: everything predicted; precision 2/8, recall 1
    assert M.aupr_micro(scores, targets) == pytest.approx(0.25)
    f1, thr = M.peak_f1_micro(scores, targets)
    assert f1 == pytest.approx(2 * 2 / (8 + 2))
    assert thr == 0.3


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_name_the_label(bad):
    scores = np.zeros((3, 3))
    scores[1, 2] = bad
    with pytest.raises(M.MetricsInputError, match=r"label 'dog' \(column 2\)"):
        M.compute_metrics(scores, np.zeros((3, 3)), label_names=["cat", "bird", "dog"])
    with pytest.raises(ValueError, match="column 2"):
        M.aupr_micro(scores, np.zeros((3, 3)))


def test_bad_targets_and_shapes():
    with pytest.raises(M.MetricsInputError, match="not 0/1 .*column 1"):
        M.compute_metrics(np.zeros((2, 2)), np.array([[0, 2], [1, 0]]))
    with pytest.raises(M.MetricsInputError, match="shape"):
        M.compute_metrics(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="average"):
        M.f1_at_threshold(np.zeros((2, 2)), np.ones((2, 2)), 0.5, average="weighted")


# ---- novel labels only (open splits) ------------------------------------------------------------
def test_novel_label_metrics_keep_only_labels_outside_the_training_vocabulary():
    from ovc.evaluate.metrics import compute_metrics, novel_columns, novel_label_metrics

    labels = ["dog", "sliding left", "expanding"]  # dog was a training label
    scores = np.array([[0.9, 0.9, 0.2], [0.1, 0.8, 0.3], [0.2, 0.7, 0.9], [0.1, 0.1, 0.1]])
    targets = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert novel_columns(labels, {"dog", "cat"}) == [1, 2]
    m = novel_label_metrics(scores, targets, labels, {"dog", "cat"})
    # AP(sliding left) = (1/1 + 2/3) / 2; AP(expanding) = 1/2 (its positive ranks second)
    assert m["aupr_macro_novel"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    # pooled novel pairs, ranked 0.9(+) 0.9(-) 0.8(-) 0.7(+) 0.3(+) ...: precision 1/2, 1/2, 3/5 at recall 1/3, 2/3, 1
    assert m["aupr_micro_novel"] == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    assert m["novel_labels"] == 2 and m["novel_labels_with_positives"] == 2
    assert m["aupr_macro_known"] == pytest.approx(1.0)  # dog alone, same videos
    everything = compute_metrics(scores, targets, labels)
    assert everything["aupr_macro"] == pytest.approx(
        (1.0 + (1 + 2 / 3) / 2 + 0.5) / 3
    )  # dog (AP 1) lifts the all-label number
    assert m["aupr_macro_novel"] < everything["aupr_macro"]


def test_novel_label_metrics_without_novel_labels_are_undefined():
    from ovc.evaluate.metrics import novel_label_metrics

    scores, targets = np.array([[0.9, 0.1]]), np.array([[1, 0]])
    m = novel_label_metrics(scores, targets, ["dog", "cat"], ["cat", "dog", "bird"])
    assert np.isnan(m["aupr_macro_novel"]) and np.isnan(m["aupr_micro_novel"]) and m["novel_labels"] == 0
    m = novel_label_metrics(scores, targets, ["dog", "owl"], ["dog"])  # owl is novel but has no positive
    assert np.isnan(m["aupr_macro_novel"]) and m["novel_labels"] == 1 and m["novel_labels_with_positives"] == 0
