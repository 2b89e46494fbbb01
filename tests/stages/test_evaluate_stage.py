"""The evaluate stage: every method x split, metrics.json shape, raw scores anyone can re-score, tables, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ovc.config import load_config
from ovc.evaluate.metrics import compute_metrics, f1_at_threshold
from ovc.evaluate.report import load_metrics_json, load_scores
from ovc.pipeline import run_stage
from tests.helpers import REPO_ROOT, tiny_overrides

METHODS = ["ours", "clip_classname", "clip_fixed_attributes", "coop"]


@pytest.mark.slow
def test_evaluate_writes_metrics_scores_tables_and_plots(tiny_project):
    cfg = load_config(
        REPO_ROOT / "params.yaml",
        tiny_overrides(
            tiny_project,
            "train.epochs=1",
            "train.max_steps_per_epoch=1",
            "train.methods=[ours,coop]",
            f"evaluate.methods=[{','.join(METHODS)}]",
        ),
    )
    run_stage("train", cfg)
    run_stage("attributes", cfg)  # offline: the synthetic world's hand-written descriptions
    summary = run_stage("evaluate", cfg)
    assert summary["attributes"]["provider"] == "hand-written"
    assert "CLIP with hand-written attributes" in (tiny_project / "eval" / "results.md").read_text()
    out = tiny_project / "eval"
    splits = [
        "val",
        "open_actions",
        "open_actions_related",
        "open_entities",
        "open_rare",
        "open_synonyms",
        "open_temporal",
    ]
    assert sorted(summary["splits"]) == sorted(splits)
    assert summary["methods"] == METHODS

    metrics = load_metrics_json(out / "metrics.json")  # validates the shape
    thr = metrics["calibrated_threshold"]
    assert thr is not None and 0.0 <= thr <= 1.0
    for split in splits:
        assert set(metrics[split]) == set(METHODS)
        for method in METHODS:
            entry = metrics[split][method]
            for key in ("aupr_macro", "aupr_micro", "peak_f1_micro", "peak_f1_macro", "f1_at_calibrated"):
                assert key in entry
            # the raw scores reproduce every stored number
            f = load_scores(out / split / f"{method}.npz")
            assert f.scores.shape == f.targets.shape and f.scores.shape[1] == len(f.labels)
            assert set(np.unique(f.targets)) <= {0, 1}
            again = compute_metrics(f.scores, f.targets, f.labels)
            for key in ("aupr_macro", "aupr_micro", "peak_f1_micro", "peak_f1_macro"):
                stored = entry[key]
                assert (stored is None and np.isnan(again[key])) or stored == pytest.approx(again[key], abs=1e-9)
            assert entry["f1_at_calibrated"] == pytest.approx(
                f1_at_threshold(f.scores, f.targets, entry["calibrated_threshold"], average="micro"), abs=1e-9
            )
            # the calibrated threshold can never beat the oracle peak of the same split
            assert entry["f1_at_calibrated"] <= entry["peak_f1_micro"] + 1e-9
    # the split's vocabulary is the one it is evaluated on
    vocab = load_scores(out / "open_actions" / "ours.npz").labels
    assert "rotating" in vocab and "blinking" in vocab

    md = (out / "results.md").read_text()
    assert "CLIP with Class name Prompt" in md and "Ours: + Temporal Modeling" in md
    assert (out / "results_aupr_macro.csv").exists()
    plots = out / "plots"
    assert (plots / "f1_vs_threshold_ours.png").stat().st_size > 0
    assert (plots / "pr_curves_ours.png").stat().st_size > 0
    assert (plots / "f1_threshold_val_ours.csv").read_text().startswith("threshold,f1")
    assert json.loads((out / "summary.json").read_text())["calibrated_thresholds"]["ours"] == thr
    assert "seconds" not in json.loads((out / "summary.json").read_text())  # DVC outs: no wall-clock


def test_evaluate_needs_trained_weights(tiny_project):
    cfg = load_config(REPO_ROOT / "params.yaml", tiny_overrides(tiny_project, "evaluate.methods=[ours]"))
    with pytest.raises(FileNotFoundError, match="run `ovc stage train` first"):
        run_stage("evaluate", cfg)


def test_closed_datasets_split_by_training_dataset_else_by_label_kind():
    """§4.5 / Table 1: YouTube-8M and Kinetics rows are their own datasets (own videos, own labels);
    the offline world's one dataset falls back to its entity/action halves."""
    import numpy as np

    from ovc.evaluate.calibration import calibrate_threshold
    from ovc.stages.evaluate import SplitData, closed_datasets

    vocab = ["car", "dog", "running", "swimming"]
    kinds = {"car": "entity", "dog": "entity", "running": "action", "swimming": "action"}
    positives = [["car"], ["dog", "car"], ["running"], ["swimming"]]
    mixed = SplitData(
        "val",
        ["a", "b", "c", "d"],
        ["a", "b", "c", "d"],
        positives,
        vocab,
        kinds,
        sources=["youtube8m", "youtube8m", "kinetics", "kinetics"],
    )
    targets = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.uint8)
    scores = np.array(
        [[0.9, 0.2, 0.1, 0.1], [0.8, 0.7, 0.3, 0.2], [0.1, 0.1, 0.4, 0.35], [0.2, 0.1, 0.3, 0.45]], dtype=np.float32
    )
    datasets, by = closed_datasets(mixed, scores, targets)
    assert by == "source" and set(datasets) == {"val_youtube8m", "val_kinetics"}
    yt_scores, yt_targets = datasets["val_youtube8m"]
    assert yt_scores.shape == (2, 2) and yt_targets.tolist() == [[1, 0], [1, 1]]  # its videos x its labels
    thr, details = calibrate_threshold(datasets)
    assert set(details["f1_at_threshold"]) == {"val_youtube8m", "val_kinetics"}
    assert details["min_f1_at_threshold"] == min(details["f1_at_threshold"].values())

    one = SplitData(
        "val", ["a", "b", "c", "d"], ["a", "b", "c", "d"], positives, vocab, kinds, sources=["synthworld"] * 4
    )
    datasets, by = closed_datasets(one, scores, targets)
    assert by == "kind" and set(datasets) == {"val_entity", "val_action"}


def test_untrained_starts_and_novel_only_metrics(tiny_project):
    """<m>_step0 rows need no training; every split reports AUPR over its novel labels (never in training)."""
    from ovc.data.manifest import read_vocabulary
    from ovc.evaluate.metrics import novel_label_metrics

    methods = ["coop_step0", "clip_classname"]
    cfg = load_config(
        REPO_ROOT / "params.yaml", tiny_overrides(tiny_project, f"evaluate.methods=[{','.join(methods)}]")
    )
    run_stage("evaluate", cfg)  # no train stage ran: the untrained starts load no weights
    out = tiny_project / "eval"
    metrics = load_metrics_json(out / "metrics.json")
    vocab = read_vocabulary(tiny_project / "clean" / "vocabulary.parquet")
    known = set(vocab.loc[vocab["vocab"] == "train", "label"])
    for split in ("val", "open_entities", "open_synonyms"):
        for method in methods:
            entry = metrics[split][method]
            f = load_scores(out / split / f"{method}.npz")
            again = novel_label_metrics(f.scores, f.targets, f.labels, known)
            assert entry["novel_labels"] == again["novel_labels"] == sum(label not in known for label in f.labels)
            stored = entry["aupr_macro_novel"]
            assert (stored is None and np.isnan(again["aupr_macro_novel"])) or stored == pytest.approx(
                again["aupr_macro_novel"]
            )
    assert (
        metrics["val"]["coop_step0"]["novel_labels"] == 0 and metrics["open_synonyms"]["coop_step0"]["novel_labels"] > 0
    )
    md = (out / "results.md").read_text()
    assert "CoOp* (step 0)" in md and "novel labels only" in md
    assert (out / "results_aupr_macro_novel.csv").exists()
