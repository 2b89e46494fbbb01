"""The val-AUPR curve of a training run: rank 0 scores the model being trained on a fixed subset of
the ``val`` split every ``train.eval_every`` optimizer steps (see :func:`ovc.train.loop.train_worker`).

Scoring is the evaluate stage's own (:mod:`ovc.evaluate.scoring`: same split data, eval-mode
video embeddings, ``σ(s/τ)`` over the training vocabulary; AUPR from :mod:`ovc.evaluate.metrics`),
so the curve's last point is what ``ovc stage evaluate`` reports for the same videos. What does
not change while training is computed once, on the first evaluation:

* the subset's frames (decoded once per worker, uniform sampling, kept as uint8 on the CPU and
  shared by the methods the worker trains: :class:`ValSubset`);
* methods whose video side has nothing to train (``coop``, ``dualcoop``, ``ours_no_temporal``):
  the video embeddings themselves (shared by those methods too), so each evaluation only
  re-embeds the vocabulary;
* ``ours``: the frozen CLIP trunk outputs the temporal branch reads (:meth:`VideoEncoder.encode_trunk`),
  as long as they fit in :data:`TRUNK_CACHE_BYTES`; each evaluation runs only the branch;
* ``vificlip`` (CLIP itself trains): only the frames; each evaluation runs the whole video tower.

An evaluation runs in ``torch.no_grad()`` and eval mode (α = E[α], as at evaluation), then puts the
method back in its mode, and forks the torch/numpy random state so a run with the curve trains
exactly the weights of a run without it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ovc.config import Config

log = logging.getLogger(__name__)

SUBSET_SEED = (
    0  # the val subset depends on this, never on train.seed: every seed and method is scored on the same videos
)
TRUNK_CACHE_BYTES = (
    1 << 30
)  # keep `ours`'s trunk outputs up to 1 GiB (96 ovc-vit-mini clips: ~100 MB; ViT-B/16 at 224: ~1.9 GB)


def val_subset(n_videos: int, n_keep: int) -> list[int]:
    """Indices of the videos scored: all when ``n_keep`` is 0 or covers them, else ``n_keep`` drawn
    without replacement with :data:`SUBSET_SEED`, in manifest order.

    Args:
        n_videos: videos in the split.
        n_keep: ``train.eval_videos`` (0 = all).
    """
    if n_keep <= 0 or n_keep >= n_videos:
        return list(range(n_videos))
    return sorted(np.random.default_rng(SUBSET_SEED).choice(n_videos, size=n_keep, replace=False).tolist())


@contextlib.contextmanager
def _forked_rng(device: torch.device):
    """Run the body without moving torch's (CPU and the device's CUDA) or numpy's global random state."""
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            np.random.set_state(np_state)


class ValSubset:
    """The val subset's videos, decoded once per worker and shared by the methods it trains, with
    the frozen-CLIP video embeddings that several methods share (``coop``, ``dualcoop`` and
    ``ours_no_temporal`` all read the frozen mean of frames: :func:`ovc.evaluate.scoring.video_key`).

    Attributes:
        split: SplitData of the subset with its frames loaded (None when ``disabled``).
        targets: (V, L) uint8 over the training vocabulary.
        frozen: video key -> (V, D) embeddings of video sides that never train.
        disabled: why there is no curve ("" = there is one).
        seconds: what loading took.
    """

    def __init__(self, split: Any = None, disabled: str = "", seconds: float = 0.0):
        self.split = split
        self.targets: np.ndarray | None = split.targets() if split is not None else None
        self.frozen: dict[str, torch.Tensor] = {}
        self.disabled = disabled
        self.seconds = seconds

    @classmethod
    def load(cls, cfg: Config) -> ValSubset:
        """Read the ``val`` split of the clean manifest, keep :func:`val_subset` of it and decode it
        (unreadable videos are dropped, with a warning naming them). A manifest without a ``val``
        split (or its vocabulary) gives a disabled subset: training goes on without the curve."""
        from ovc.evaluate.scoring import load_splits

        t0 = time.perf_counter()
        try:
            split = load_splits(cfg, ["val"])["val"]
        except ValueError as e:
            log.warning("train: no val-AUPR curve: %s", e)
            return cls(disabled=str(e))
        split = split.subset(val_subset(len(split.video_ids), cfg.train.eval_videos))
        split.load_frames(cfg)
        return cls(split, seconds=time.perf_counter() - t0)


class ValCurve:
    """Scores one method on the val subset; prepared lazily (a finished run decodes nothing).

    Args:
        cfg: the whole config (``train.eval_videos``, ``reader``, ``evaluate.batch_size``, ``loss.tau``, ``compute.amp``).
        method: the method being trained (its weights change between evaluations, the object does not).
        device: the method's device.
        load_subset: returns the worker's :class:`ValSubset` (cached: the methods of a worker share
            it); default: load it for this method alone.
    """

    def __init__(
        self, cfg: Config, method: Any, device: torch.device, load_subset: Callable[[], ValSubset] | None = None
    ):
        self.cfg = cfg
        self.method = method
        self.device = torch.device(device)
        self.load_subset = load_subset or (lambda: ValSubset.load(cfg))
        self.subset: ValSubset | None = None
        self.video_emb: torch.Tensor | None = None  # (V, D): video side frozen
        self.trunk: Any = None  # VideoFeatures (V, F, ...) on the CPU: `ours`'s frozen trunk outputs
        self.setup_seconds = 0.0

    @property
    def split(self) -> Any:
        return self.subset.split if self.subset is not None else None

    def _prepare(self) -> None:
        from ovc.evaluate.scoring import embed_videos, video_key
        from ovc.models.methods import method_clip
        from ovc.models.video_encoder import VideoEncoder

        t0 = time.perf_counter()
        cfg, method = self.cfg, self.method
        self.subset = subset = self.load_subset()
        if subset.disabled:
            return
        split = subset.split
        clip = method_clip(method)
        ve = method.video_encoder
        bs = cfg.evaluate.batch_size
        if not any(p.requires_grad for p in ve.parameters()):
            # nothing on the video side trains: its embeddings are those of step 0 for the whole run
            key = video_key(method)
            if key not in subset.frozen:
                with torch.no_grad(), _eval_mode(method):
                    subset.frozen[key] = embed_videos(
                        method, split.frames, clip.image_mean, clip.image_std, bs, self.device, cfg.compute.amp
                    )
            self.video_emb = subset.frozen[key]
        elif isinstance(ve, VideoEncoder) and self._trunk_bytes(ve, split.frames) <= TRUNK_CACHE_BYTES:
            self.trunk = self._encode_trunk(ve, split.frames, clip)
        self.setup_seconds = time.perf_counter() - t0
        kept = (
            "video embeddings"
            if self.video_emb is not None
            else "trunk outputs"
            if self.trunk is not None
            else "frames"
        )
        log.info(
            "%s: val curve on %d val videos x %d labels (%s kept), set up in %.2f s",
            method.name,
            len(split.video_ids),
            len(split.vocab),
            kept,
            self.setup_seconds,
        )

    @staticmethod
    def _trunk_bytes(ve: Any, frames: torch.Tensor) -> int:
        """float32 bytes of the trunk tokens of ``frames`` (V, F, 3, H, W): V·F·T·(1+N)·W·4."""
        clip = ve.clip
        n_tokens = int(clip.visual.positional_embedding.shape[0])  # 1 + N
        return int(frames.shape[0] * frames.shape[1] * len(ve.blocks) * n_tokens * clip.vision_width * 4)

    def _encode_trunk(self, ve: Any, frames: torch.Tensor, clip: Any) -> Any:
        """The frozen trunk outputs of every subset video, in batches, kept on the CPU."""
        from ovc.data.loader import to_model_input
        from ovc.models.device import autocast
        from ovc.models.video_encoder import VideoFeatures

        embeds, tokens = [], []
        bs = self.cfg.evaluate.batch_size
        for i in range(0, len(frames), bs):
            x = to_model_input(frames[i : i + bs], self.device, clip.image_mean, clip.image_std)
            with autocast(self.device, self.cfg.compute.amp):
                f = ve.encode_trunk(x)
            embeds.append(f.embeds.float().cpu())
            tokens.append(f.tokens.float().cpu())
        return VideoFeatures(torch.cat(embeds), torch.cat(tokens))  # (V, F, D), (V, F, T, 1+N, W)

    def _video_embeddings(self) -> torch.Tensor:
        """(V, D) video embeddings of the method as it is now (eval mode, no grad)."""
        from ovc.evaluate.scoring import embed_videos
        from ovc.models.device import autocast
        from ovc.models.methods import method_clip
        from ovc.models.video_encoder import VideoFeatures

        if self.video_emb is not None:
            return self.video_emb
        bs = self.cfg.evaluate.batch_size
        if self.trunk is not None:
            out = []
            for i in range(0, len(self.trunk.embeds), bs):
                feats = VideoFeatures(self.trunk.embeds[i : i + bs], self.trunk.tokens[i : i + bs]).to(self.device)
                with autocast(self.device, self.cfg.compute.amp):
                    out.append(self.method.video_encoder.forward_features(feats).float())
            return torch.cat(out)
        clip = method_clip(self.method)
        return embed_videos(
            self.method, self.split.frames, clip.image_mean, clip.image_std, bs, self.device, self.cfg.compute.amp
        )

    def evaluate(self) -> dict[str, float | None]:
        """Val AUPR of the method's current weights.

        Returns:
            ``{"val_aupr_macro", "val_aupr_micro", "val_seconds"}`` (AUPRs None when the curve is
            off or the subset has no positive; ``val_seconds``: this evaluation's scoring), plus
            ``val_setup_seconds`` on the first one (decoding, the frozen parts' precomputation).
        """
        from ovc.evaluate.metrics import aupr_macro, aupr_micro
        from ovc.evaluate.scoring import score_split

        t0 = time.perf_counter()
        setup = 0.0
        with _forked_rng(self.device):  # decoding draws loader seeds from torch's generator, for one
            if self.subset is None:
                self._prepare()
                setup = self.setup_seconds
            assert self.subset is not None
            if self.subset.disabled:
                return {"val_aupr_macro": None, "val_aupr_micro": None, "val_seconds": 0.0}
            with torch.no_grad(), _eval_mode(self.method):
                video_emb = self._video_embeddings()
                scores = score_split(
                    self.method, self.split, video_emb, self.cfg.loss.tau, self.cfg.evaluate.batch_size
                )  # (V, L) σ(s/τ)
        macro, _ = aupr_macro(scores, self.subset.targets, self.split.vocab)
        micro = aupr_micro(scores, self.subset.targets)
        seconds = time.perf_counter() - t0
        log.debug("%s: val AUPR macro %.4f micro %.4f in %.2f s", self.method.name, macro, micro, seconds - setup)
        out: dict[str, float | None] = {
            "val_aupr_macro": _finite(macro),
            "val_aupr_micro": _finite(micro),
            "val_seconds": round(seconds - setup, 4),
        }
        if setup:
            out["val_setup_seconds"] = round(setup, 4)
        return out


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module):
    """``module`` in eval mode for the body, then back in the mode it was in."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _finite(v: float) -> float | None:
    """None for NaN (no positive label in the subset): JSON and the CSV's empty cell."""
    return None if math.isnan(v) else float(v)
