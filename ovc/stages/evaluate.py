"""Stage ``evaluate``: every method on every split, in one harness (paper §4.3–4.5).

For each split (closed ``val``; each open-vocabulary set ``open_<what>``) and each method (``ours``,
``ours_no_temporal``, the frozen CLIP baselines and the trained baselines) it

* embeds the split's vocabulary with the method's label encoder and the split's videos (uniform
  frame sampling) with its video encoder; scores are ``p = σ(s/τ)`` with ``s`` the method's score
  (paper eq. 1–2; monotone in ``s``, so AUPR/peak F1 are those of ``s``, and every method's
  thresholds live on one [0, 1] axis as in Fig. 6);
* keeps the raw scores and targets in ``<eval>/<split>/<method>.npz`` so any metric can be
  recomputed;
* computes AUPR (macro over labels with ≥1 positive, and micro) and peak F1 (micro and macro);
* calibrates one global threshold per method on the closed validation data — the threshold that
  maximises the *minimum* F1 across the training datasets (§4.5; :func:`closed_datasets`). With
  several training datasets in the manifest (``source``: YouTube-8M and Kinetics in the paper's
  setting) each is also reported as its own closed split (``val_youtube8m``, ``val_kinetics``, as
  Table 1); the synthetic world's one training set stands in with its entity-label and action-label
  halves (``val_entity``, ``val_action``), the paper's entity (YouTube-8M) / action (Kinetics) divide;
* reports each split's F1 at that threshold, writes ``metrics.json`` (``dvc metrics show``), the
  results tables (markdown + csv, like Tables 1–2), PR and F1-vs-threshold curves (``dvc plots
  show``) and Fig. 6-style PNGs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ovc.config import Config
from ovc.evaluate.scoring import (  # split data and scoring, shared with the train loop's val curve
    CLOSED_SPLITS,
    SplitData,
    embed_videos,
    load_splits,
    score_split,
    video_key,
)
from ovc.paths import DataLayout

log = logging.getLogger(__name__)

# the calibration "training datasets": the val split's entity labels and its action labels
CALIBRATION_KINDS = ("entity", "action")


def eval_dir(cfg: Config) -> Path:
    return DataLayout.of(cfg).eval


def closed_datasets(
    split: SplitData, scores: np.ndarray, targets: np.ndarray
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """The datasets a closed split is reported and calibrated on (paper §4.5, Table 1).

    When the split mixes training datasets (the manifest's ``source``: YouTube-8M and Kinetics in
    the paper's setting), one per dataset: its videos and its labels (those positive for at least one
    of its videos), named ``<split>_<source>``. The offline world is one dataset; there its
    entity-label and action-label halves stand in for YouTube-8M (entities) and Kinetics (actions):
    ``<split>_entity``, ``<split>_action``.

    Args:
        split: the closed split (``sources``, ``positives``, ``vocab``, ``kinds``).
        scores, targets: (V, L) of the split, rows in ``split.video_ids`` order.

    Returns:
        ({name: (scores, targets)}, "source" | "kind") — what the datasets were split by.
    """
    sources = sorted(set(split.sources))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if len(sources) >= 2:
        index = {label: j for j, label in enumerate(split.vocab)}
        for src in sources:
            rows = [i for i, s in enumerate(split.sources) if s == src]
            cols = sorted({index[label] for i in rows for label in split.positives[i] if label in index})
            if rows and cols:
                out[f"{split.name}_{src}"] = (scores[np.ix_(rows, cols)], targets[np.ix_(rows, cols)])
        return out, "source"
    for kind in CALIBRATION_KINDS:
        cols = [j for j, label in enumerate(split.vocab) if split.kinds.get(label) == kind]
        if cols:
            out[f"{split.name}_{kind}"] = (scores[:, cols], targets[:, cols])
    return out, "kind"


# --------------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------------
def evaluate(cfg: Config) -> dict[str, Any]:
    """Evaluate ``cfg.evaluate.methods`` on every split; write metrics, scores, tables and plots."""
    from ovc.data.manifest import training_labels
    from ovc.evaluate.calibration import calibrate_threshold
    from ovc.evaluate.metrics import (
        compute_metrics,
        f1_at_threshold,
        f1_curve,
        novel_label_metrics,
        pr_curve,
    )
    from ovc.evaluate.plots import (
        plot_f1_vs_threshold,
        plot_pr_curves,
        write_curve,
        write_pr_curve,
    )
    from ovc.evaluate.report import (
        save_scores,
        write_metrics_json,
        write_results_tables,
    )
    from ovc.models.device import resolve_device
    from ovc.models.methods import (
        MissingAttributesError,
        load_method,
        method_clip,
        read_attributes,
    )

    t0 = time.time()
    torch.manual_seed(cfg.evaluate.seed)
    device = resolve_device(cfg.compute.device)
    out = eval_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    attributes = read_attributes(cfg)

    splits = load_splits(cfg)
    known = training_labels(DataLayout.of(cfg).clean_vocabulary)  # "novel" = never in it
    for split in splits.values():
        split.load_frames(cfg)
    metrics: dict[str, Any] = {name: {} for name in splits}
    thresholds: dict[str, float | None] = {}
    skipped_methods: dict[str, str] = {}
    f1_curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    grid = np.linspace(0.0, 1.0, cfg.evaluate.plot_points)
    shared_video: dict[tuple[str, str], torch.Tensor] = {}
    all_scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    for name in cfg.evaluate.methods:
        try:
            method = load_method(cfg, name, attributes, device=device)
        except MissingAttributesError as e:
            skipped_methods[name] = str(e)
            log.warning("evaluate: skipping %s: %s", name, e)
            continue
        clip = method_clip(method)
        per_split = all_scores.setdefault(name, {})  # split -> (scores, targets)
        for split in splits.values():
            key = (video_key(method), split.name)
            if key not in shared_video:
                assert split.frames is not None, f"split {split.name}: frames not loaded"
                shared_video[key] = embed_videos(
                    method,
                    split.frames,
                    clip.image_mean,
                    clip.image_std,
                    cfg.evaluate.batch_size,
                    device,
                    cfg.compute.amp,
                )
            scores = score_split(method, split, shared_video[key], cfg.loss.tau, cfg.evaluate.batch_size)
            targets = split.targets()
            save_scores(out / split.name / f"{name}.npz", scores, targets, split.vocab)
            per_split[split.name] = (scores, targets)
            m = compute_metrics(scores, targets, split.vocab)
            metrics[split.name][name] = {
                "aupr_macro": m["aupr_macro"],
                "aupr_micro": m["aupr_micro"],
                "peak_f1_micro": m["peak_f1_micro"],
                "peak_f1_macro": m["peak_f1_macro"],
                "peak_threshold_micro": m["peak_threshold_micro"],
                **novel_label_metrics(scores, targets, split.vocab, known),  # AUPR over novel labels only
            }
        # calibration on the closed validation data, one dataset per training dataset (§4.5)
        calib: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for closed in CLOSED_SPLITS:
            if closed not in per_split:
                continue
            datasets, by = closed_datasets(splits[closed], *per_split[closed])
            calib.update(datasets)
            if by == "source":  # reported separately, as Table 1 does for YouTube-8M and Kinetics
                for ds_name, (ds_scores, ds_targets) in datasets.items():
                    per_split[ds_name] = (ds_scores, ds_targets)
                    m = compute_metrics(ds_scores, ds_targets)
                    metrics.setdefault(ds_name, {})[name] = {
                        k: m[k]
                        for k in ("aupr_macro", "aupr_micro", "peak_f1_micro", "peak_f1_macro", "peak_threshold_micro")
                    }
        thr = None
        if calib:
            thr, details = calibrate_threshold(calib, average=cfg.evaluate.calibration_average)
            thresholds[name] = thr
        for split_name, (scores, targets) in per_split.items():
            entry = metrics[split_name][name]
            entry["f1_at_calibrated"] = (
                f1_at_threshold(scores, targets, thr, average=cfg.evaluate.calibration_average)
                if thr is not None
                else None
            )
            entry["calibrated_threshold"] = thr
            f1_curves.setdefault(name, {})[split_name] = (
                grid,
                f1_curve(scores, targets, grid, cfg.evaluate.calibration_average),
            )
        log.info("evaluate %s: done", name)
        del method

    main = cfg.evaluate.main_method
    result = {**metrics, "calibrated_threshold": thresholds.get(main)}
    write_metrics_json(result, out / "metrics.json")
    # the fixed-attributes row says where its descriptions came from: an LLM, or a hand-written file
    from ovc.models.methods import HAND_WRITTEN, read_attributes_provenance

    provenance = read_attributes_provenance(cfg) or {}
    display = (
        {"clip_fixed_attributes": "CLIP with hand-written attributes"}
        if provenance.get("provider") == HAND_WRITTEN
        else None
    )
    tables = write_results_tables(metrics, out, display_names=display)
    # plots: F1 vs threshold per method and split (Fig. 6), PR curves of the main method per split
    plots = out / "plots"
    for name, curves in f1_curves.items():
        for split_name, (g, f1) in curves.items():
            write_curve({"threshold": g, "f1": f1}, plots / f"f1_threshold_{split_name}_{name}.csv", key="f1")
        plot_f1_vs_threshold(
            curves, thresholds.get(name), plots / f"f1_vs_threshold_{name}.png", title=f"{name}: F1 vs threshold"
        )
    if main in all_scores:
        pr = {}
        for split_name, (s, t) in all_scores[main].items():
            write_pr_curve(s, t, plots / f"pr_{split_name}_{main}.csv")
            precision, recall, _ = pr_curve(s, t)
            pr[split_name] = (precision, recall)
        plot_pr_curves(pr, plots / f"pr_curves_{main}.png", aupr={k: metrics[k][main]["aupr_micro"] for k in pr})
    summary = {
        "splits": {
            k: {"videos": len(v.video_ids), "labels": len(v.vocab), "skipped_videos": len(v.skipped)}
            for k, v in splits.items()
        },
        "methods": [m for m in cfg.evaluate.methods if m not in skipped_methods],
        "skipped_methods": skipped_methods,
        "attributes": {k: provenance.get(k) for k in ("provider", "model", "described")} if provenance else None,
        "calibrated_thresholds": thresholds,
        "tables": {k: str(v) for k, v in tables.items()},
    }
    # DVC outputs are deterministic: no wall-clock in summary.json (it would re-run publish for nothing);
    # the time is logged and returned (printed by `ovc stage evaluate`), not stored in data/eval.
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    seconds = round(time.time() - t0, 1)
    log.info("evaluate: %d method(s) in %.1f s", len(cfg.evaluate.methods) - len(skipped_methods), seconds)
    return {**summary, "seconds": seconds}
