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
from ovc.paths import DataLayout

log = logging.getLogger(__name__)

CLOSED_SPLITS = ("val",)
# the calibration "training datasets": the val split's entity labels and its action labels
CALIBRATION_KINDS = ("entity", "action")


def eval_dir(cfg: Config) -> Path:
    return DataLayout.of(cfg).eval


# --------------------------------------------------------------------------------------------------
# Data of one split
# --------------------------------------------------------------------------------------------------
class SplitData:
    """One split's videos (decoded once, shared by all methods), vocabulary and targets."""

    def __init__(
        self,
        name: str,
        paths: list[str],
        video_ids: list[str],
        positives: list[list[str]],
        vocab: list[str],
        kinds: dict[str, str],
        sources: list[str] | None = None,
    ):
        self.name = name
        self.paths = paths
        self.video_ids = video_ids
        self.positives = positives
        self.vocab = vocab
        self.kinds = kinds
        self.sources = list(sources) if sources is not None else ["unknown"] * len(video_ids)  # dataset of each video
        self.frames: torch.Tensor | None = None  # (V, F, 3, H, W) uint8 after load_frames
        self.skipped: list[tuple[str, str]] = []

    def targets(self) -> np.ndarray:
        index = {label: j for j, label in enumerate(self.vocab)}
        t = np.zeros((len(self.video_ids), len(self.vocab)), dtype=np.uint8)
        for i, labels in enumerate(self.positives):
            for label in labels:
                if label in index:
                    t[i, index[label]] = 1
        return t

    def load_frames(self, cfg: Config) -> None:
        """Decode every video once (uniform sampling, ``reader.loader_workers`` processes ahead);
        unreadable videos are reported (warning naming the file, ``skipped``) and dropped."""
        from tqdm.auto import tqdm

        from ovc.data.loader import ClipLoader

        loader = ClipLoader.from_config(cfg, self.paths, stage=f"evaluate {self.name}")
        frames, keep = [], []
        n = len(self.paths)
        for batch in tqdm(
            loader.sequential(cfg.evaluate.batch_size),
            total=-(-n // cfg.evaluate.batch_size),
            desc=f"decode {self.name}",
            leave=False,
            disable=None,
        ):
            if batch.frames is not None:
                frames.append(batch.frames)
                keep += batch.indices
        self.skipped = [(f.path, f.message) for f in loader.failures]
        if not frames:
            raise ValueError(f"split {self.name!r}: no readable video")
        self.paths = [self.paths[i] for i in keep]
        self.video_ids = [self.video_ids[i] for i in keep]
        self.positives = [self.positives[i] for i in keep]
        self.sources = [self.sources[i] for i in keep]
        self.frames = torch.cat(frames)  # batches of (B, F, 3, H, W) -> (V, F, 3, H, W) uint8


def load_splits(cfg: Config, splits: list[str] | None = None) -> dict[str, SplitData]:
    """The evaluation splits of the clean manifest: ``val`` (training vocabulary) and every ``open_*``."""
    from ovc.data.manifest import read_clean, resolve_video_path

    layout = DataLayout.of(cfg)
    manifest_path = layout.clean_manifest
    df, vocab_df = read_clean(cfg)  # paths confined to the data roots
    present = [s for s in df["split"].unique().tolist() if s in CLOSED_SPLITS or s.startswith("open_")]
    wanted = splits or cfg.evaluate.splits or sorted(present, key=lambda s: (s not in CLOSED_SPLITS, s))
    out: dict[str, SplitData] = {}
    for split in wanted:
        rows = df[df["split"] == split]
        if len(rows) == 0:
            raise ValueError(f"{manifest_path}: no videos in split {split!r} (present: {sorted(present)})")
        vocab_name = "train" if split in CLOSED_SPLITS else split
        v = vocab_df[vocab_df["vocab"] == vocab_name]
        if len(v) == 0:
            raise ValueError(f"{layout.clean_vocabulary}: no vocabulary {vocab_name!r} for split {split!r}")
        out[split] = SplitData(
            split,
            [str(resolve_video_path(manifest_path, p)) for p in rows["path"]],
            rows["video_id"].tolist(),
            [list(x) for x in rows["labels"]],
            sorted(v["label"].tolist()),
            dict(zip(v["label"], v["kind"])),
            [str(x) for x in rows["source"]] if "source" in rows else None,
        )
    return out


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
# Methods
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def embed_videos(
    method, frames_u8: torch.Tensor, mean, std, batch_size: int, device: torch.device | str = "cpu", amp: bool = True
) -> torch.Tensor:
    """(V, F, 3, H, W) uint8 (CPU) -> (V, D) float32 video embeddings on ``device``, in batches
    (each batch is moved to ``device`` as uint8 and normalised there)."""
    from ovc.data.loader import to_model_input
    from ovc.models.device import autocast

    device = torch.device(device)
    out = []
    for i in range(0, len(frames_u8), batch_size):
        with autocast(device, amp):
            out.append(method.encode_videos(to_model_input(frames_u8[i : i + batch_size], device, mean, std)).float())
    return torch.cat(out)


def _video_key(method) -> str:
    """Methods whose video side is the same frozen CLIP mean of frames share its embeddings."""
    from ovc.models.video_encoder import VideoEncoder

    ve = method.video_encoder
    if isinstance(ve, VideoEncoder) and not ve.cfg.use_temporal:
        return "frozen_clip_mean"
    return method.name


def score_split(method, split: SplitData, video_emb: torch.Tensor, tau: float, batch_size: int) -> np.ndarray:
    """p = σ(s/τ) for every (video, label) pair of the split: (V, L) float32."""
    label_emb = method.embed_vocabulary(split.vocab, batch_size=batch_size).float()  # (L, D) on the method's device
    s = method.score(video_emb.to(label_emb.device), label_emb)  # (V, L)
    return torch.sigmoid(s / tau).cpu().numpy().astype(np.float32)


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
            key = (_video_key(method), split.name)
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
