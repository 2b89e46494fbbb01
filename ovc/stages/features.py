"""Stage ``features``: cache the frozen CLIP trunk outputs of the training split (optional; what the
cache holds and why it is off by default: :mod:`ovc.train.features`).

Files: ``data/features/train.safetensors`` (``embeds``, ``tokens``) and ``data/features/index.json``
(video ids in row order, the fingerprint of what the cache depends on, sizes).
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ovc.config import Config, VideoEncoderConfig
from ovc.data.loader import ClipLoader, to_model_input
from ovc.fileio import atomic_dir
from ovc.models.clip import create_clip
from ovc.models.device import autocast, resolve_device
from ovc.models.pretrained import resolve_clip_config
from ovc.models.video_encoder import VideoEncoder
from ovc.paths import DataLayout
from ovc.train.data import TrainData
from ovc.train.features import FEATURE_DTYPES, cache_fingerprint


def features(cfg: Config) -> dict[str, Any]:
    """Build (``features.enabled``) or clear the cache of the training split's trunk outputs."""

    out = DataLayout.of(cfg).features
    t0 = time.time()
    if not cfg.features.enabled:
        with atomic_dir(out) as tmp:
            (tmp / "index.json").write_text(json.dumps({"enabled": False}, indent=2))
        return {"enabled": False, "dir": str(out)}
    if cfg.features.dtype not in FEATURE_DTYPES:
        raise ValueError(f"features.dtype must be one of {sorted(FEATURE_DTYPES)}, got {cfg.features.dtype!r}")

    torch.set_num_threads(max(1, cfg.features.threads))
    device = resolve_device(cfg.compute.device)
    clip = create_clip(resolve_clip_config(cfg), device=device)
    encoder = VideoEncoder(
        clip, VideoEncoderConfig(temporal_layers=cfg.video_encoder.temporal_layers, use_temporal=True)
    )
    data = TrainData(cfg)
    loader = ClipLoader.from_config(cfg, data.paths, stage="features", device=device)
    embeds, tokens, ids = [], [], []
    bs = cfg.features.batch_size
    for batch in tqdm(loader.sequential(bs), total=-(-len(data) // bs), desc="features", disable=None):
        if batch.frames is None:
            continue
        with autocast(device, cfg.compute.amp):
            feats = encoder.encode_trunk(
                to_model_input(batch.frames, device, clip.image_mean, clip.image_std)
            )  # (B, F, 3, H, W)
        embeds.append(feats.embeds.float().cpu())
        tokens.append(feats.tokens.to(FEATURE_DTYPES[cfg.features.dtype]).cpu())
        ids += [data.video_ids[i] for i in batch.indices]
    skipped = [f.message for f in loader.failures]
    if not ids:
        raise ValueError("features: no readable training video")
    index = {
        "enabled": True,
        "fingerprint": cache_fingerprint(cfg),
        "video_ids": ids,
        "dtype": cfg.features.dtype,
        "skipped": skipped,
    }
    with atomic_dir(out) as tmp:
        save_file(
            {"embeds": torch.cat(embeds).contiguous(), "tokens": torch.cat(tokens).contiguous()},
            str(tmp / "train.safetensors"),
        )
        (tmp / "index.json").write_text(json.dumps(index, indent=2))
    size = (out / "train.safetensors").stat().st_size
    return {
        "enabled": True,
        "videos": len(ids),
        "skipped": len(skipped),
        "bytes": size,
        "seconds": round(time.time() - t0, 1),
    }
