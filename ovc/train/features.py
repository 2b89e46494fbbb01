"""The feature cache: frozen CLIP trunk outputs the temporal branch needs (optional; the
``features`` stage, :mod:`ovc.stages.features`, builds it).

CLIP's vision tower is frozen (paper §3.2), so for a fixed set of frames its outputs never change
during training: the unit-norm frame embeddings (B, F, D) and the tokens entering the last T
resblocks (B, F, T, 1+N, W), which the branch reads. Caching them turns each training step's
decode + CLIP trunk into a lookup. The cache holds one deterministic frame sampling per video
(``reader.eval_sampling``, uniform), so training from it gives up the random frame offsets of
``reader.train_sampling`` — the price of the speed-up, and why it is off by default.

Only methods whose video side is the frozen trunk can use it (``ours``, ``ours_no_temporal``,
``coop``, ``dualcoop``, ``ours_synth``, ``ours_no_reg``); ``vificlip`` fine-tunes CLIP and always decodes frames.

Files: ``data/features/train.safetensors`` (``embeds``, ``tokens``) and ``data/features/index.json``
(video ids in row order, the fingerprint of what the cache depends on, sizes).
"""

from __future__ import annotations

import hashlib
import json
import logging

import torch

from ovc.config import Config
from ovc.paths import DataLayout

log = logging.getLogger(__name__)

FEATURE_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


class StaleFeaturesError(RuntimeError):
    """The cache was built from other weights, frames or data; the message says what to re-run."""


def cache_fingerprint(cfg: Config) -> str:
    """Digest of what the cached tensors depend on: CLIP weights, frame sampling, T, the manifest."""
    from ovc.models.pretrained import resolve_clip_config, training_inputs_digest

    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "clip": resolve_clip_config(cfg).__dict__,
                "num_frames": cfg.reader.num_frames,
                "image_size": cfg.reader.image_size,
                "sampling": cfg.reader.eval_sampling,
                "temporal_layers": cfg.video_encoder.temporal_layers,
            },
            sort_keys=True,
        ).encode()
    )
    h.update(training_inputs_digest(cfg))
    return h.hexdigest()[:16]


class FeatureCache:
    """Cached trunk outputs of the training split, looked up by video id."""

    def __init__(self, embeds: torch.Tensor, tokens: torch.Tensor, video_ids: list[str]):
        self.embeds = embeds  # (V, F, D) float32
        self.tokens = tokens  # (V, F, T, 1+N, W) storage dtype
        self.row = {vid: i for i, vid in enumerate(video_ids)}

    @classmethod
    def load(cls, cfg: Config) -> FeatureCache:
        """Open the cache; raise StaleFeaturesError when it does not match the current weights/data."""
        from safetensors.torch import load_file

        d = DataLayout.of(cfg).features
        index_path = d / "index.json"
        if not index_path.exists() or not json.loads(index_path.read_text()).get("enabled"):
            raise StaleFeaturesError(f"features.enabled is true but {d} holds no cache: run `ovc stage features`")
        index = json.loads(index_path.read_text())
        if index["fingerprint"] != cache_fingerprint(cfg):
            raise StaleFeaturesError(
                f"{d} was built from other CLIP weights, frames or data: re-run `ovc stage features`"
            )
        tensors = load_file(str(d / "train.safetensors"))
        return cls(tensors["embeds"], tensors["tokens"], index["video_ids"])

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.row

    def get(self, video_ids: list[str]):
        """VideoFeatures of these videos (float32), in order."""
        from ovc.models.video_encoder import VideoFeatures

        rows = torch.tensor([self.row[v] for v in video_ids])
        return VideoFeatures(self.embeds[rows], self.tokens[rows].float())  # (B, F, D), (B, F, T, 1+N, W)
