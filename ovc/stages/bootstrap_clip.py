"""Stage ``bootstrap_clip`` (offline default only): pre-train a small CLIP on captioned synthetic
frames and save it in open_clip's ``local-dir:`` format, where the rest of the pipeline loads it
exactly as it loads real weights. The recipe and its measurements: :mod:`ovc.train.bootstrap`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from ovc.config import Config
from ovc.fileio import atomic_dir, atomic_write_json
from ovc.models.clip import save_clip_local_dir
from ovc.models.device import resolve_device
from ovc.paths import DataLayout
from ovc.train.bootstrap import METRICS_FILENAME, curve_ends, train_clip

log = logging.getLogger(__name__)


def bootstrap_clip(cfg: Config) -> dict[str, Any]:
    """Stage ``bootstrap_clip``: train the offline default's CLIP and save it as ``local-dir``.

    Writes ``<data>/models/bootstrap_clip/`` (``open_clip_config.json`` + safetensors weights,
    loadable with ``ClipConfig(model=cfg.clip.model, pretrained="local-dir:<dir>")``) and
    ``zero_shot.json`` (zero-shot accuracies, chance levels, loss curve summary, timing). The
    directory is replaced atomically (built next to it, then renamed).

    Returns:
        summary: ``out_dir``, ``model``, ``steps``, ``loss_first``/``loss_last`` (caption loss),
        ``shape_loss_first``/``shape_loss_last`` (image <-> shape-word loss), timing and
        zero-shot top-1 per task.
    """
    t0 = time.perf_counter()
    bcfg = cfg.bootstrap
    out = DataLayout.of(cfg).bootstrap_clip  # where resolve_clip_config looks
    clip, hist = train_clip(bcfg, cfg.clip, device=resolve_device(cfg.compute.device))
    (loss_first, loss_last), (shape_first, shape_last) = (
        curve_ends(hist["caption_loss"]),
        curve_ends(hist["shape_loss"]),
    )
    metrics = {
        "model": cfg.clip.model,
        "zero_shot": hist["zero_shot"],
        "evals": hist["evals"],
        "loss_first": loss_first,  # caption (CLIP) loss, from step shape_steps on
        "loss_last": loss_last,
        "shape_loss_first": shape_first,  # image <-> shape-word loss, every step
        "shape_loss_last": shape_last,
        "loss_curve": hist["loss"][:: max(1, len(hist["loss"]) // 100)],
        "logit_scale": hist["logit_scale"][-1],
        "render_s": hist["render_s"],
        "train_s": hist["train_s"],
        "steps_per_s": hist["steps_per_s"],
        "threads": hist["threads"],
        "params": asdict(bcfg),
    }
    with atomic_dir(out) as tmp:
        save_clip_local_dir(clip, cfg.clip.model, tmp)
        metrics["wall_s"] = round(time.perf_counter() - t0, 2)
        atomic_write_json(tmp / METRICS_FILENAME, metrics)
    summary = {
        "out_dir": str(out),
        "model": cfg.clip.model,
        "steps": bcfg.steps,
        "loss_first": round(metrics["loss_first"], 4),
        "loss_last": round(metrics["loss_last"], 4),
        "shape_loss_first": None if shape_first is None else round(shape_first, 4),
        "shape_loss_last": None if shape_last is None else round(shape_last, 4),
        "wall_s": metrics["wall_s"],
        "steps_per_s": metrics["steps_per_s"],
        **{f"zero_shot_{t}": v["top1"] for t, v in hist["zero_shot"].items()},
    }
    log.info("bootstrap_clip: %s", summary)
    return summary
