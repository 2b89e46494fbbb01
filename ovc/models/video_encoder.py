"""Video encoder: frozen CLIP ViT + regularised parallel temporal branch (paper §3.2).

Frames are encoded independently by the frozen CLIP ViT. A parallel branch of T blocks runs next to
its last T layers (block t <-> CLIP resblock l = L-T+t):

* **Input of block t**: ``V_t = V_{t-1} + Proj_t(H_l)`` where ``H_l`` are the tokens *entering* CLIP
  resblock l (so the block's spatial copy of resblock l sees the tokens that layer sees). At block
  0 there is no ``V_{-1}``; learnable spatial (per token) and temporal (per frame) position
  embeddings are added and the TMP token is created as the mean over frames of the (projected) CLS
  tokens (paper §3.2).
* **Divided space-time attention** (TimeSformer order): temporal attention across frames at every
  patch position — the CLS position's sequence is ``[TMP, CLS_1..CLS_F]`` so TMP joins it — then
  spatial attention within each frame over ``[TMP, CLS_f, patches_f]`` (TMP replicated per frame,
  its F outputs averaged, as TimeSformer does for its CLS token).
* Temporal attention is randomly initialised with a zero output projection; the spatial layer is
  a copy of CLIP resblock l's attention sub-layer (``ln_1, attn, ls_1``; the paper's "spatial
  attention layer initialised from CLIP"). ``spatial_mlp=True`` also copies the MLP sub-layer
  (``ln_2, mlp, ls_2``), applied to every token after the TMP average (STAN-like; ~1.5x the
  branch cost). Position embeddings start at zero (TimeSformer's temporal embedding does too),
  ``Proj_0`` = identity and ``Proj_{t>0}`` = 0, so at init block 0 sees exactly CLIP's tokens and
  later blocks refine them (with ``spatial_mlp`` the branch then reproduces CLIP's layers).
* **Readout**: frame embeddings ``e_f = normalize(encode_image(frame_f))``; the TMP readout enters
  as a residual on their mean through a zero-initialised projection into the joint space,
  ``e_TMP = mean_f e_f + W_out·LN(TMP_final)``, and the video embedding is
  ``normalize(mean(e_TMP, e_1..e_F))`` — the paper's "mean of the final TMP token and the frame CLS
  tokens". With ``W_out = 0`` at init the video embedding equals the frozen-CLIP mean-of-frames
  embedding ``normalize(mean_f e_f)`` exactly, so training starts from CLIP; ``use_temporal=False``
  *is* that embedding ("ours_no_temporal").

**Stochastic weight regularisation** (paper §3.2) on the spatial layers: every training forward
uses ``θ = α·θ_ft + (1−α)·θ_frozen`` with one ``α ~ U(0, λ)`` per step, where θ_frozen are the
frozen CLIP resblock's own parameters (referenced, never copied) and θ_ft the branch's copy. It runs
through :func:`torch.func.functional_call` on ``torch.lerp``-interpolated tensors: one forward and
one backward, ``dθ/dθ_ft = α``. At eval the weights are the *expected* training weights,
``α = E[α] = λ/2`` (``eval_alpha`` overrides): training never sees α above λ, so using θ_ft (α=1)
would extrapolate the learned weight delta ~4x beyond its average training scale — the same
reason dropout scales weights by their keep probability at test time.

**λ = 0 is "no regularisation"** (the ``ours_no_reg`` ablation, Table 3b's "✗ Spatial Reg." row with
the frozen backbone): α = 1 in training *and* at eval, so the spatial layers are θ_ft, trained with
the full gradient (dθ/dθ_ft = 1) and used as trained; ``eval_alpha`` is ignored (an eval-time pull
towards θ_frozen would be a post-hoc regulariser, WiSE-FT-like, which the ablation must not have).
It is *not* the literal limit of α ~ U(0, λ): λ → 0⁺ gives α ≈ 0, i.e. θ = θ_frozen with no gradient
reaching θ_ft — the spatial copies frozen at CLIP's weights, a different ablation (only the temporal
attention, projections, position embeddings and readout would train). The jump at λ = 0 is
deliberate; the branch itself is on in both cases (``use_temporal`` switches it off).
"""

from __future__ import annotations

import copy
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ovc.config import VideoEncoderConfig
from ovc.models.attention import multihead_attention
from ovc.models.clip import ClipModel

ATTN_PARTS = ("ln_1", "attn", "ls_1")
MLP_PARTS = ("ln_2", "mlp", "ls_2")


class TemporalAttention(nn.Module):
    """Pre-LN multi-head self-attention across frames; zero output projection (no-op at init).

    Args:
        width: token width.
        heads: attention heads.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(S, T, W) sequences over time -> residual update (S, T, W)."""
        h = self.ln(x)
        return multihead_attention(self.attn, h, h)


class SpatialLayer(nn.Module):
    """Copy of a CLIP resblock's attention (and optionally MLP) sub-layer, with TMP replicated per frame.

    Sub-module names equal the CLIP resblock's, so parameter names match θ_frozen one to one.

    Args:
        resblock: the open_clip ``ResidualAttentionBlock`` to copy.
        with_mlp: also copy ``ln_2, mlp, ls_2``.
    """

    # set by setattr from ATTN_PARTS / MLP_PARTS in __init__ (MLP parts only when with_mlp)
    ln_1: nn.Module
    attn: nn.MultiheadAttention
    ls_1: nn.Module
    ln_2: nn.Module
    mlp: nn.Module
    ls_2: nn.Module

    def __init__(self, resblock: nn.Module, with_mlp: bool):
        super().__init__()
        self.with_mlp = with_mlp
        for name in ATTN_PARTS + (MLP_PARTS if with_mlp else ()):
            setattr(self, name, copy.deepcopy(getattr(resblock, name)))
        self.float()  # θ_ft trains in fp32 even if CLIP runs in bf16/fp16 (lerp promotes θ_frozen)
        for p in self.parameters():  # the copy is θ_ft: trainable even though CLIP is frozen
            p.requires_grad = True

    def forward(
        self, frames: torch.Tensor, tmp: torch.Tensor, tmp_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, F, S, W), tmp (B, W) -> updated (frames, tmp).

        ``tmp_only``: only TMP queries the attention (frames returned unchanged) — exact for TMP and
        what the last block needs, since only the final TMP is read out.
        """
        B, Fr, S, W = frames.shape
        x = torch.cat([tmp[:, None, None, :].expand(B, Fr, 1, W), frames], dim=2)  # (B, F, 1+S, W)
        x = x.reshape(B * Fr, 1 + S, W)  # (B, F, 1+S, W) -> (B*F, 1+S, W)
        h = self.ln_1(x)
        if tmp_only:
            upd = self.ls_1(multihead_attention(self.attn, h[:, :1], h))  # (B*F, 1, W): TMP queries only
            tmp = tmp + upd.view(B, Fr, W).mean(dim=1)  # (B*F, 1, W) -> (B, F, W) -> (B, W)
            if self.with_mlp:
                tmp = tmp + self.ls_2(self.mlp(self.ln_2(tmp)))
            return frames, tmp
        x = x + self.ls_1(multihead_attention(self.attn, h, h))
        x = x.view(B, Fr, 1 + S, W)  # (B*F, 1+S, W) -> (B, F, 1+S, W)
        tmp, frames = x[:, :, 0].mean(dim=1), x[:, :, 1:]  # (B, W), (B, F, S, W)
        if self.with_mlp:
            frames = frames + self.ls_2(self.mlp(self.ln_2(frames)))
            tmp = tmp + self.ls_2(self.mlp(self.ln_2(tmp)))
        return frames, tmp


class TemporalBlock(nn.Module):
    """One branch block: input projection, divided space-time attention (paper Fig. 4).

    Args:
        resblock: matching frozen CLIP resblock (copied into the spatial layer).
        width, heads: CLIP vision width / heads.
        identity_proj: init ``Proj`` as identity (block 0) instead of zero.
        with_mlp: see :class:`SpatialLayer`.
    """

    def __init__(self, resblock: nn.Module, width: int, heads: int, identity_proj: bool, with_mlp: bool):
        super().__init__()
        self.proj = nn.Linear(width, width)
        nn.init.zeros_(self.proj.bias)
        if identity_proj:
            nn.init.eye_(self.proj.weight)
        else:
            nn.init.zeros_(self.proj.weight)
        self.temporal = TemporalAttention(width, heads)
        self.spatial = SpatialLayer(resblock, with_mlp)

    def temporal_attention(self, x: torch.Tensor, tmp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, F, 1+N, W), tmp (B, W) -> both after temporal attention (residual)."""
        B, Fr, S, W = x.shape
        patches = x[:, :, 1:].permute(0, 2, 1, 3).reshape(B * (S - 1), Fr, W)  # (B, F, N, W) -> (B*N, F, W)
        patches = patches + self.temporal(patches)
        patches = patches.view(B, S - 1, Fr, W).permute(0, 2, 1, 3)  # (B*N, F, W) -> (B, F, N, W)
        cls_seq = torch.cat([tmp[:, None], x[:, :, 0]], dim=1)  # (B, 1+F, W): [TMP, CLS_1..CLS_F]
        cls_seq = cls_seq + self.temporal(cls_seq)
        x = torch.cat([cls_seq[:, 1:, None], patches], dim=2)  # (B, F, 1+N, W)
        return x, cls_seq[:, 0]


class VideoFeatures(NamedTuple):
    """Frozen-trunk outputs of a batch of videos (cacheable: they do not depend on trained weights)."""

    embeds: torch.Tensor  # (B, F, D) unit-norm CLIP frame embeddings
    tokens: torch.Tensor  # (B, F, T, 1+N, W) tokens entering the last T CLIP resblocks (or (B, F, 0))

    def to(self, device) -> VideoFeatures:
        """Both tensors on ``device`` (cached features live on the CPU until a step needs them)."""
        return VideoFeatures(self.embeds.to(device, non_blocking=True), self.tokens.to(device, non_blocking=True))


class VideoEncoder(nn.Module):
    """Frozen CLIP ViT + parallel temporal branch -> L2-normalised video embeddings (paper §3.2).

    Args:
        clip: a :class:`~ovc.models.clip.ClipModel`; it is locked (frozen, eval) here.
        cfg: ``temporal_layers`` T, ``weight_reg_lambda`` λ, ``use_temporal``, ``spatial_mlp``,
            ``eval_alpha``.
        max_frames: size of the temporal position table (longer clips raise).
    """

    def __init__(self, clip: ClipModel, cfg: VideoEncoderConfig | None = None, max_frames: int = 64):
        super().__init__()
        cfg = cfg or VideoEncoderConfig()
        self.clip = clip.lock()
        self.cfg = cfg
        self.max_frames = max_frames
        self.blocks = nn.ModuleList()
        self._interp_cache: dict[int, tuple] = {}  # no-grad only: block -> (key, interpolated params)
        if not cfg.use_temporal:
            return
        L, W, T = clip.vision_layers, clip.vision_width, cfg.temporal_layers
        if not 1 <= T <= L:
            raise ValueError(f"temporal_layers must be in [1, {L}] for this CLIP, got {T}")
        resblocks = clip.visual.transformer.resblocks
        self.first_layer = L - T  # CLIP resblock matched by block 0
        heads = resblocks[0].attn.num_heads
        n_tokens = clip.visual.positional_embedding.shape[0]  # 1 + N
        self.blocks.extend(
            TemporalBlock(resblocks[self.first_layer + t], W, heads, identity_proj=t == 0, with_mlp=cfg.spatial_mlp)
            for t in range(T)
        )
        self.spatial_pos = nn.Parameter(torch.zeros(n_tokens, W))
        self.temporal_pos = nn.Parameter(torch.zeros(max_frames, W))
        ln_post = clip.visual.ln_post
        self.tmp_norm = copy.deepcopy(ln_post).float() if isinstance(ln_post, nn.LayerNorm) else nn.LayerNorm(W)
        for p in self.tmp_norm.parameters():
            p.requires_grad = True
        self.tmp_proj = nn.Linear(W, clip.embed_dim, bias=False)
        nn.init.zeros_(self.tmp_proj.weight)  # W_out = 0: video embedding == CLIP mean of frames at init

    # ------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> list[nn.Parameter]:
        """The branch's parameters (CLIP is frozen)."""
        return [p for n, p in self.named_parameters() if not n.startswith("clip.")]

    def state_dict_trainable(self) -> dict[str, torch.Tensor]:
        """State dict of the branch only (for checkpoints; CLIP weights live in their own dir)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.")}

    def load_state_dict_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`state_dict_trainable` output (strict on the branch's keys)."""
        own = self.state_dict_trainable()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"video encoder branch state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.load_state_dict(state, strict=False)

    # ------------------------------------------------------------------ weight regularisation
    def resolve_alpha(self, alpha: float | None = None) -> float:
        """α for this forward: explicit > disabled (λ<=0 -> 1) > U(0, λ) in training > eval α.

        Args:
            alpha: an explicit α (tests, analysis, the trainer's per-step draw); wins over the rest.

        Returns:
            ``alpha`` if given; 1.0 when λ <= 0 (no regularisation: θ_ft as trained, in training and at
            eval alike, ``eval_alpha`` ignored — see the module doc); a draw of U(0, λ) in training;
            ``eval_alpha``, else E[α] = λ/2, at eval.
        """
        lam = self.cfg.weight_reg_lambda
        if alpha is not None:
            return float(alpha)
        if lam <= 0:
            return 1.0
        if self.training:
            return float(torch.rand(()).item()) * lam
        return float(self.cfg.eval_alpha) if self.cfg.eval_alpha is not None else lam / 2

    def sample_alpha(self, generator: torch.Generator) -> float | None:
        """One training α ~ U(0, λ) from ``generator`` (the trainer seeds it per step, identically on
        every data-parallel worker, so all replicas interpolate with the same α); None when the
        regularisation is off or the encoder is in eval mode (then :meth:`resolve_alpha` decides)."""
        lam = self.cfg.weight_reg_lambda
        if not self.training or lam <= 0 or not self.cfg.use_temporal:
            return None
        return float(torch.rand((), generator=generator).item()) * lam

    def _block(self, t: int) -> TemporalBlock:
        """Block t of the branch (``self.blocks`` only ever holds TemporalBlocks)."""
        return cast(TemporalBlock, self.blocks[t])

    def _interpolated(self, t: int, alpha: float) -> dict[str, torch.Tensor]:
        """α·θ_ft + (1−α)·θ_frozen of block t's spatial layer (θ_frozen = CLIP resblock's own tensors)."""
        layer = self._block(t).spatial
        frozen = dict(self.clip.visual.transformer.resblocks[self.first_layer + t].named_parameters())
        ft = dict(layer.named_parameters())
        if torch.is_grad_enabled():
            return {n: torch.lerp(frozen[n].to(p.dtype), p, alpha) for n, p in ft.items()}  # dθ/dθ_ft = α
        # no-grad (eval/inference): reuse the interpolation while α and every tensor's version are unchanged
        key = (
            alpha,
            tuple((id(p), p._version) for p in ft.values()),
            tuple((id(frozen[n]), frozen[n]._version) for n in ft),
        )
        hit = self._interp_cache.get(t)
        if hit is None or hit[0] != key:
            hit = (key, {n: torch.lerp(frozen[n].to(p.dtype), p, alpha) for n, p in ft.items()})
            self._interp_cache[t] = hit
        return hit[1]

    def _spatial(self, t: int, frames: torch.Tensor, tmp: torch.Tensor, alpha: float, tmp_only: bool):
        layer = self._block(t).spatial
        if alpha == 1.0:
            return layer(frames, tmp, tmp_only)
        return functional_call(layer, self._interpolated(t, alpha), (frames, tmp, tmp_only))

    # ------------------------------------------------------------------ forward
    def frame_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) -> (B, F, D) L2-normalised frozen-CLIP frame embeddings."""
        B, Fr = video.shape[:2]
        with torch.no_grad():
            e = self.clip.encode_image(video.flatten(0, 1))  # (B, F, 3, H, W) -> (B*F, 3, H, W) -> (B*F, D)
        return F.normalize(e.float(), dim=-1).view(B, Fr, -1)  # (B*F, D) -> (B, F, D)

    def forward(self, video: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """Encode videos.

        Args:
            video: (B, F, 3, H, W) preprocessed frames.
            alpha: weight-regularisation α for this call (tests / analysis); None = by mode.
        Returns:
            (B, embed_dim) L2-normalised video embeddings.
        """
        if video.dim() != 5:
            raise ValueError(f"video must be (B, F, 3, H, W), got {tuple(video.shape)}")
        return self.forward_features(self.encode_trunk(video), alpha)

    @torch.no_grad()
    def encode_trunk(self, video: torch.Tensor) -> VideoFeatures:
        """The frozen CLIP outputs the branch needs (what the ``features`` stage caches).

        Args:
            video: (B, F, 3, H, W) preprocessed frames.
        Returns:
            VideoFeatures with ``embeds`` (B, F, D) unit-norm frame embeddings and ``tokens``
            (B, F, T, 1+N, W): the tokens entering CLIP resblocks L-T..L-1 (empty when use_temporal is off).
        """
        B, Fr = video.shape[:2]
        if not self.cfg.use_temporal:
            return VideoFeatures(self.frame_embeddings(video), video.new_zeros(B, Fr, 0))
        T = len(self.blocks)
        ff = self.clip.encode_frames(video.flatten(0, 1), return_layers=T + 1)  # (B, F, 3, H, W) -> (B*F, 3, H, W)
        e = F.normalize(ff.embeds.float(), dim=-1).view(B, Fr, -1)  # (B*F, D) -> (B, F, D)
        tokens = torch.stack([h.float() for h in ff.layer_tokens[:T]], dim=1)  # T x (B*F, 1+N, W) -> (B*F, T, 1+N, W)
        return VideoFeatures(e, tokens.view(B, Fr, *tokens.shape[1:]))  # -> (B, F, T, 1+N, W)

    def forward_features(self, feats: VideoFeatures, alpha: float | None = None) -> torch.Tensor:
        """Video embeddings from (possibly cached) trunk outputs; see :meth:`encode_trunk`."""
        e = feats.embeds  # (B, F, D)
        B, Fr = e.shape[:2]
        if not self.cfg.use_temporal:
            return F.normalize(e.mean(dim=1), dim=-1)
        if Fr > self.max_frames:
            raise ValueError(f"{Fr} frames > max_frames={self.max_frames} of the temporal position table")
        T = len(self.blocks)
        inputs = feats.tokens.flatten(0, 1).unbind(1)  # (B, F, T, 1+N, W) -> (B*F, T, 1+N, W) -> T x (B*F, 1+N, W)
        a = self.resolve_alpha(alpha)
        x: torch.Tensor | None = None
        tmp: torch.Tensor | None = None
        for t in range(T):
            block = self._block(t)
            h = block.proj(inputs[t])
            h = h.view(B, Fr, *h.shape[1:])  # (B*F, 1+N, W) -> (B, F, 1+N, W)
            if x is None:
                h = h + self.spatial_pos + self.temporal_pos[:Fr, None]  # (1+N, W) and (F, 1, W) broadcast
                tmp = h[:, :, 0].mean(dim=1)  # TMP = mean of frame CLS tokens, (B, W)
                x = h
            else:
                x = x + h
            assert tmp is not None  # set from the frame CLS tokens at block 0
            x, tmp = block.temporal_attention(x, tmp)
            last = t == T - 1  # the last block's frame tokens are never read: only TMP queries
            patches, tmp = self._spatial(t, x, tmp, a, tmp_only=last)  # (B, F, 1+N, W) incl. CLS, (B, W)
            x = patches
        e_tmp = e.mean(dim=1) + self.tmp_proj(self.tmp_norm(tmp))  # (B, D): mean frame emb + zero-init readout
        video_emb = torch.cat([e_tmp[:, None], e], dim=1).mean(
            dim=1
        )  # mean of (e_TMP, e_1..e_F): (B, 1+F, D) -> (B, D)
        return F.normalize(video_emb, dim=-1)
