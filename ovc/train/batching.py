"""Batch label sets for multi-label training (paper §3.3).

For B videos with positive label sets P(v): P_B = ∪ P(v); N_B = random labels from the rest of the
vocabulary so that |P_B ∪ N_B| = labels_per_video · B (4B in the paper). Every label of P_B ∪ N_B
that is not positive for a video is a negative for it, so the target matrix is dense: (B, |labels|)
with 1 for positives and 0 elsewhere.

    batch = sample_label_set([["dog", "run"], ["cat"]], vocabulary, labels_per_video=4, rng=np.random.default_rng(0))
    batch.labels   # ["dog", "run", "cat", <5 random negatives>]
    batch.targets  # (2, 8) float tensor

:class:`MultiLabelCollator` does this inside a ``DataLoader`` (``collate_fn=``) over a manifest dataset.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class LabelSet:
    """The labels of one batch and its targets.

    Attributes:
        labels: P_B (first-seen order) followed by N_B (sampled order).
        targets: (B, len(labels)) float 0/1; 1 where the label is a positive of the video.
        n_positive: |P_B|.
        short_by: how many labels are missing from labels_per_video·B because the vocabulary
            has too few non-positive labels (0 normally).
    """

    labels: list[str]
    targets: torch.Tensor
    n_positive: int
    short_by: int = 0


def _permutation(n: int, rng: np.random.Generator | torch.Generator) -> list[int]:
    if isinstance(rng, torch.Generator):
        return torch.randperm(n, generator=rng).tolist()
    return rng.permutation(n).tolist()


def sample_label_set(
    positives: Sequence[Iterable[str]],
    vocabulary: Sequence[str],
    labels_per_video: int = 4,
    rng: np.random.Generator | torch.Generator | int | None = None,
) -> LabelSet:
    """Build P_B ∪ N_B and the (B, |P_B ∪ N_B|) target matrix for a batch (paper §3.3).

    Args:
        positives: per video, its positive labels P(v) (duplicates ignored).
        vocabulary: the training label vocabulary negatives are drawn from (duplicates ignored).
            Positives outside it still count as positives.
        labels_per_video: target size of P_B ∪ N_B is labels_per_video · B; if |P_B| is already
            at least that, no negatives are added.
        rng: numpy or torch Generator (or a seed) — the same generator state gives the same batch.

    Returns:
        :class:`LabelSet`; ``short_by > 0`` when the vocabulary ran out of negatives.
    """
    if not isinstance(rng, (np.random.Generator, torch.Generator)):
        rng = np.random.default_rng(rng)
    per_video = [list(dict.fromkeys(p)) for p in positives]
    batch_pos = list(dict.fromkeys(label for p in per_video for label in p))  # P_B, first-seen order
    want = labels_per_video * len(per_video)
    n_neg = max(0, want - len(batch_pos))
    short_by = 0
    negatives: list[str] = []
    if n_neg:
        taken = set(batch_pos)
        pool = [label for label in dict.fromkeys(vocabulary) if label not in taken]  # vocabulary \ P_B
        if len(pool) < n_neg:
            short_by = n_neg - len(pool)
            n_neg = len(pool)
        negatives = [pool[i] for i in _permutation(len(pool), rng)[:n_neg]]
    labels = batch_pos + negatives
    index = {label: j for j, label in enumerate(labels)}
    targets = torch.zeros(len(per_video), len(labels))
    for i, p in enumerate(per_video):
        targets[i, [index[label] for label in p]] = 1.0
    return LabelSet(labels=labels, targets=targets, n_positive=len(batch_pos), short_by=short_by)


class MultiLabelCollator:
    """``collate_fn`` for a ``DataLoader`` over a manifest dataset: stacks frames, samples the batch labels.

    Each dataset item is a dict with ``frames_key`` (a tensor, e.g. (F, 3, H, W)) and ``labels_key``
    (list of positive labels); other keys are collected into lists. The returned dict has ``frames``
    stacked (B, ...), ``labels`` (the batch label list), ``targets`` (B, |labels|), ``positives``
    (per-video label lists) and the other keys as lists.

    Determinism: each batch's generator is seeded from (seed, epoch, CRC32 of the batch's labels and
    ids), so negatives do not depend on which DataLoader worker builds the batch or on the workers'
    copies of generator state; call :meth:`set_epoch` to draw new negatives each epoch.

    Args:
        vocabulary: training vocabulary for negatives.
        labels_per_video: |P_B ∪ N_B| = labels_per_video · B.
        seed: base seed.
        frames_key, labels_key, id_key: item keys (``id_key`` feeds the seed when present).
    """

    def __init__(
        self,
        vocabulary: Sequence[str],
        labels_per_video: int = 4,
        seed: int = 0,
        frames_key: str = "frames",
        labels_key: str = "labels",
        id_key: str = "video_id",
    ):
        self.vocabulary = list(dict.fromkeys(vocabulary))
        self.labels_per_video = labels_per_video
        self.seed = seed
        self.epoch = 0
        self.frames_key, self.labels_key, self.id_key = frames_key, labels_key, id_key
        self.short_batches = 0  # batches with fewer than labels_per_video·B labels (this process)
        self._warned = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batch_rng(self, items: list[dict[str, Any]]) -> np.random.Generator:
        key = "\x1f".join(str(it.get(self.id_key, "")) + "\x1e" + "\x1e".join(it[self.labels_key]) for it in items)
        return np.random.default_rng([self.seed, self.epoch, zlib.crc32(key.encode("utf-8"))])

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("MultiLabelCollator: empty batch")
        for i, it in enumerate(items):
            if self.frames_key not in it or self.labels_key not in it:
                raise KeyError(
                    f"batch item {i} (id {it.get(self.id_key, '?')!r}) lacks {self.frames_key!r} or {self.labels_key!r}"
                )
        positives = [list(it[self.labels_key]) for it in items]
        label_set = sample_label_set(positives, self.vocabulary, self.labels_per_video, self._batch_rng(items))
        if label_set.short_by:
            self.short_batches += 1
            if not self._warned:
                log.warning(
                    "vocabulary of %d labels is too small for %d labels per video: batches get fewer labels "
                    "than %d·B (this batch: %d short); counted in short_batches",
                    len(self.vocabulary),
                    self.labels_per_video,
                    self.labels_per_video,
                    label_set.short_by,
                )
                self._warned = True
        batch: dict[str, Any] = {
            "frames": torch.stack([it[self.frames_key] for it in items]),  # B x (F, 3, H, W) -> (B, F, 3, H, W)
            "labels": label_set.labels,
            "targets": label_set.targets,
            "positives": positives,
        }
        for key in items[0]:
            if key not in (self.frames_key, self.labels_key):
                batch[key] = [it.get(key) for it in items]
        return batch
