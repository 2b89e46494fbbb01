"""The multi-label training objective (paper §3.3, eq. 2).

For B videos and the batch's label set P_B ∪ N_B, every (video, label) pair is a binary sample:

    s(ℓ, v) = ⟨f_t(ℓ), f_v(v)⟩,   p = σ(s / τ)
    L = −Σ_v [ Σ_{ℓ∈P(v)} log p  +  w Σ_{ℓ∈N(v)} log(1 − p) ]

``log p`` and ``log(1 − p)`` are computed as ``logsigmoid(s/τ)`` and ``logsigmoid(−s/τ)`` (stable for
large |s/τ|). ``reduction="sum"`` is the paper's sum over videos; ``"mean"`` divides by the number of
counted (video, label) pairs, which keeps the loss scale independent of B (|labels| = 4B, so the sum
grows as B²).

The weight w (not stated in the paper) matters. Unit-norm CLIP embeddings of unrelated text and
video still have positive cosines, so at τ = 0.07 nearly every negative starts at p ≈ 0.9; with w = 1
the ~15 negatives per positive of a 4B-label batch dominate, and the cheapest way down the loss is a
shift common to all label embeddings, which scrambles each label's ranking of videos. Measured on the
offline default (``ours_no_temporal``, frozen video side, val macro AUPR ×100, start 29.8): after 30
steps w = 1 gave 21.2 (lr 1e-3; 25.0 at lr 1e-4), w = 0.1 gave 27.1 and w = 0.02 gave 29.5. The
default w = 0.1 ≈ |P(v)| / |N(v)| weighs positives and negatives alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ovc.config import LossConfig

REDUCTIONS = ("sum", "mean")


def multilabel_loss_from_scores(
    scores: torch.Tensor,
    targets: torch.Tensor,
    tau: float = 0.07,
    neg_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Weighted binary cross-entropy on temperature-scaled scores (paper eq. 2).

    Args:
        scores: (B, L) similarities s(ℓ, v) = ⟨f_t(ℓ), f_v(v)⟩.
        targets: (B, L) 1 for ℓ ∈ P(v), 0 for ℓ ∈ N(v).
        tau: temperature τ of p = σ(s/τ).
        neg_weight: weight w of the negative pairs.
        mask: optional (B, L) bool/0-1, pairs to count (default all).
        reduction: "sum" (paper) or "mean" (per counted pair).

    Returns:
        scalar loss.
    """
    if scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} differ in shape")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    logits = scores / tau  # (B, L)
    targets = targets.to(logits.dtype)
    per_pair = -(targets * F.logsigmoid(logits) + neg_weight * (1.0 - targets) * F.logsigmoid(-logits))  # (B, L)
    if mask is not None:
        mask = mask.to(logits.dtype)
        per_pair = per_pair * mask
        count = mask.sum()
    else:
        count = torch.tensor(float(per_pair.numel()), dtype=logits.dtype, device=logits.device)
    total = per_pair.sum()
    return total if reduction == "sum" else total / count.clamp_min(1.0)


def multilabel_loss(
    video_emb: torch.Tensor,
    label_emb: torch.Tensor,
    targets: torch.Tensor,
    tau: float = 0.07,
    neg_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Loss of eq. 2 from embeddings: s = video_emb @ label_emb.T.

    Args:
        video_emb: (B, D) video embeddings f_v(v) (unit norm in the paper).
        label_emb: (L, D) label embeddings f_t(ℓ).
        targets: (B, L) 0/1 targets.
        tau, neg_weight, mask, reduction: as :func:`multilabel_loss_from_scores`.
    """
    scores = video_emb @ label_emb.t()  # (B, D) x (D, L) -> (B, L)
    return multilabel_loss_from_scores(scores, targets, tau, neg_weight, mask, reduction)


class MultiLabelLoss(nn.Module):
    """Module form of eq. 2 configured from :class:`~ovc.config.LossConfig`."""

    def __init__(self, cfg: LossConfig | None = None):
        super().__init__()
        cfg = cfg or LossConfig()
        self.tau = cfg.tau
        self.neg_weight = cfg.neg_weight
        self.reduction = cfg.reduction

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) scores and 0/1 targets -> scalar loss."""
        return multilabel_loss_from_scores(scores, targets, self.tau, self.neg_weight, mask, self.reduction)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, neg_weight={self.neg_weight}, reduction={self.reduction!r}"
