"""Score a method on an evaluation split: the split's videos decoded once, its vocabulary and
targets (:class:`SplitData`), video embeddings in batches and ``p = σ(s/τ)`` for every (video,
label) pair. The ``evaluate`` stage scores every method on every split with these; the train loop
scores the model being trained on a fixed subset of ``val`` with the same code (its val-AUPR
curve), so both report the same numbers for the same weights.

Torch and the data loader are imported here (unlike the pure-numpy metrics): import this module
only where a model is scored.
"""

from __future__ import annotations

import numpy as np
import torch

from ovc.config import Config
from ovc.paths import DataLayout

CLOSED_SPLITS = ("val",)  # splits scored on the training vocabulary (the rest are open_*)


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

    def subset(self, indices: list[int]) -> SplitData:
        """The videos at ``indices`` (in that order) with the same vocabulary; frames too when loaded."""
        out = SplitData(
            self.name,
            [self.paths[i] for i in indices],
            [self.video_ids[i] for i in indices],
            [self.positives[i] for i in indices],
            self.vocab,
            self.kinds,
            [self.sources[i] for i in indices],
        )
        if self.frames is not None:
            out.frames = self.frames[indices]  # (V, F, 3, H, W) -> (len(indices), F, 3, H, W)
        return out

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


# --------------------------------------------------------------------------------------------------
# Scoring a method
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


def video_key(method) -> str:
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
