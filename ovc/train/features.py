"""Stage ``features``: cache the frozen CLIP trunk outputs the temporal branch needs (optional).

CLIP's vision tower is frozen (paper §3.2), so for a fixed set of frames its outputs never change
during training: the unit-norm frame embeddings (B, F, D) and the tokens entering the last T
resblocks (B, F, T, 1+N, W), which the branch reads. Caching them turns each training step's
decode + CLIP trunk into a lookup. The cache holds one deterministic frame sampling per video
(``reader.eval_sampling``, uniform), so training from it gives up the random frame offsets of
``reader.train_sampling`` — the price of the speed-up, and why it is off by default.

Only methods whose video side is the frozen trunk can use it (``ours``, ``ours_no_temporal``,
``coop``, ``dualcoop``, ``ours_synth``); ``vificlip`` fine-tunes CLIP and always decodes frames.

Files: ``data/features/train.safetensors`` (``embeds``, ``tokens``) and ``data/features/index.json``
(video ids in row order, the fingerprint of what the cache depends on, sizes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from ovc.config import Config

log = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


class StaleFeaturesError(RuntimeError):
    """The cache was built from other weights, frames or data; the message says what to re-run."""


def features_dir(cfg: Config) -> Path:
    return Path(cfg.paths.data) / "features"


def cache_fingerprint(cfg: Config) -> str:
    """Digest of what the cached tensors depend on: CLIP weights, frame sampling, T, the manifest."""
    from ovc.models.pretrained import resolve_clip_config, training_inputs_digest

    h = hashlib.sha256()
    h.update(json.dumps({
        "clip": resolve_clip_config(cfg).__dict__,
        "num_frames": cfg.reader.num_frames,
        "image_size": cfg.reader.image_size,
        "sampling": cfg.reader.eval_sampling,
        "temporal_layers": cfg.video_encoder.temporal_layers,
    }, sort_keys=True).encode())
    h.update(training_inputs_digest(cfg))
    return h.hexdigest()[:16]


def uses_frozen_trunk(method) -> bool:
    """Whether a method's video side is the frozen-trunk VideoEncoder (so it can train from the cache)."""
    from ovc.models.video_encoder import VideoEncoder

    return isinstance(method.video_encoder, VideoEncoder)


def features(cfg: Config) -> dict[str, Any]:
    """Build (``features.enabled``) or clear the cache of the training split's trunk outputs."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ovc.config import VideoEncoderConfig
    from ovc.data.video import VideoReadError, normalize_frames, read_frames
    from ovc.models.clip import create_clip
    from ovc.models.pretrained import resolve_clip_config
    from ovc.models.video_encoder import VideoEncoder
    from ovc.train.checkpoint import atomic_replace_dir
    from ovc.train.loop import _TrainData

    out = features_dir(cfg)
    t0 = time.time()
    if not cfg.features.enabled:
        with atomic_replace_dir(out) as tmp:
            (tmp / "index.json").write_text(json.dumps({"enabled": False}, indent=2))
        return {"enabled": False, "dir": str(out)}
    if cfg.features.dtype not in _DTYPES:
        raise ValueError(f"features.dtype must be one of {sorted(_DTYPES)}, got {cfg.features.dtype!r}")

    torch.set_num_threads(max(1, cfg.features.threads))
    clip = create_clip(resolve_clip_config(cfg))
    encoder = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=cfg.video_encoder.temporal_layers, use_temporal=True))
    data = _TrainData(cfg)
    embeds, tokens, ids, skipped = [], [], [], []
    bs = cfg.features.batch_size
    for i in tqdm(range(0, len(data), bs), desc="features", disable=None):
        frames, batch_ids = [], []
        for j in range(i, min(i + bs, len(data))):
            try:
                f = read_frames(data.paths[j], cfg.reader.num_frames, cfg.reader.image_size, sampling=cfg.reader.eval_sampling, max_pixels=cfg.reader.max_pixels)
            except VideoReadError as e:
                skipped.append(str(e))
                log.warning("features: skipping %s", e)
                continue
            frames.append(normalize_frames(f, clip.image_mean, clip.image_std))
            batch_ids.append(data.video_ids[j])
        if not frames:
            continue
        feats = encoder.encode_trunk(torch.stack(frames))  # B x (F, 3, H, W) -> (B, F, 3, H, W)
        embeds.append(feats.embeds.float())
        tokens.append(feats.tokens.to(_DTYPES[cfg.features.dtype]))
        ids += batch_ids
    if not ids:
        raise ValueError("features: no readable training video")
    index = {
        "enabled": True,
        "fingerprint": cache_fingerprint(cfg),
        "video_ids": ids,
        "dtype": cfg.features.dtype,
        "skipped": skipped,
    }
    with atomic_replace_dir(out) as tmp:
        save_file({"embeds": torch.cat(embeds).contiguous(), "tokens": torch.cat(tokens).contiguous()}, str(tmp / "train.safetensors"))
        (tmp / "index.json").write_text(json.dumps(index, indent=2))
    size = (out / "train.safetensors").stat().st_size
    return {"enabled": True, "videos": len(ids), "skipped": len(skipped), "bytes": size, "seconds": round(time.time() - t0, 1)}


class FeatureCache:
    """Cached trunk outputs of the training split, looked up by video id."""

    def __init__(self, embeds: torch.Tensor, tokens: torch.Tensor, video_ids: list[str]):
        self.embeds = embeds  # (V, F, D) float32
        self.tokens = tokens  # (V, F, T, 1+N, W) storage dtype
        self.row = {vid: i for i, vid in enumerate(video_ids)}

    @classmethod
    def load(cls, cfg: Config) -> "FeatureCache":
        """Open the cache; raise StaleFeaturesError when it does not match the current weights/data."""
        from safetensors.torch import load_file

        d = features_dir(cfg)
        index_path = d / "index.json"
        if not index_path.exists() or not json.loads(index_path.read_text()).get("enabled"):
            raise StaleFeaturesError(f"features.enabled is true but {d} holds no cache: run `ovc stage features`")
        index = json.loads(index_path.read_text())
        if index["fingerprint"] != cache_fingerprint(cfg):
            raise StaleFeaturesError(f"{d} was built from other CLIP weights, frames or data: re-run `ovc stage features`")
        tensors = load_file(str(d / "train.safetensors"))
        return cls(tensors["embeds"], tensors["tokens"], index["video_ids"])

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.row

    def get(self, video_ids: list[str]):
        """VideoFeatures of these videos (float32), in order."""
        from ovc.models.video_encoder import VideoFeatures

        rows = torch.tensor([self.row[v] for v in video_ids])
        return VideoFeatures(self.embeds[rows], self.tokens[rows].float())  # (B, F, D), (B, F, T, 1+N, W)
