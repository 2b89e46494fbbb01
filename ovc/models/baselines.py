"""Every method of the paper's comparison behind one protocol: (label encoder, video encoder) pairs.

Paper §4.2. A :class:`Method` embeds labels (``encode_labels -> (L, D)``) and videos
(``encode_videos -> (B, D)``) and scores them with a dot product (``score -> (B, L)``); the trainer
optimises ``trainable_parameters()`` with the loss of §3.3 and the evaluator/registry only ever
call these methods, so ours and every baseline run in the same harness.

=========================  =====================================================  ====================
name                       label side                                             video side
=========================  =====================================================  ====================
``ours``                   LLM prefixes + prompt transformer -> CLIP (§3.1)        temporal branch (§3.2)
``ours_no_temporal``       same                                                   frozen CLIP mean of frames
``ours_no_reg``            same                                                   temporal branch, λ = 0 (no weight reg.)
``clip_classname``         CLIP("a video of {label}.")                            frozen mean of frames
``clip_templates``         mean of CLIP over 8 video prompt templates             frozen mean of frames
``clip_fixed_attributes``  mean of CLIP(class-name prompt, "{label}, which has     frozen mean of frames
                           {attribute}" per attribute of the attributes JSON)
``coop``                   CoOp*: learnable shared context [V]_1..[V]_M {label}.   frozen mean of frames
``dualcoop``               DualCoOp*: positive and negative learnable contexts     frozen mean of frames
``vificlip``               ViFi-CLIP*: CLIP("a video of {label}."), fine-tuned     CLIP mean of frames, fine-tuned
=========================  =====================================================  ====================

Trainable: ours and ours_no_reg (prefixes, prompt transformer, branch), ours_no_temporal (prefixes, prompt
transformer), coop (context), dualcoop (both contexts), vificlip (both CLIP towers); the
``clip_*`` baselines have none.

DualCoOp*: a label is scored by how much more the video matches its positive than its negative
prompt, s = s_pos − s_neg. With the loss's p = σ(s/τ) this *is* the softmax over the (positive,
negative) pair at temperature τ, σ((s_pos − s_neg)/τ). Since s_pos − s_neg = ⟨f_v, e_pos − e_neg⟩,
its label embedding is the difference e_pos − e_neg (norm ≤ 2, not unit) and scoring stays a dot
product, so the registry and evaluator need nothing special (``Method.unit_norm_labels`` is False).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ovc.models.clip import ClipModel

log = logging.getLogger(__name__)

# Prompt ensemble of ``clip_templates``: video-flavoured variants of CLIP's ImageNet templates.
VIDEO_TEMPLATES: tuple[str, ...] = (
    "a video of {label}.",
    "a video of a {label}.",
    "a clip of {label}.",
    "a video showing {label}.",
    "footage of {label}.",
    "a close-up video of {label}.",
    "a photo of {label}.",
    "{label}.",
)


# --------------------------------------------------------------------------------------------------
# Label encoders of the baselines: (labels) -> (L, D)
# --------------------------------------------------------------------------------------------------
class PromptLabelEncoder(nn.Module):
    """Hand-written prompts per label -> CLIP text encoder -> mean of unit embeddings -> L2 norm.

    With one template this is plain CLIP zero-shot (``clip_classname``); with several, the usual
    prompt ensemble (``clip_templates``). Subclasses change :meth:`prompts_for`.

    Args:
        clip: the CLIP whose text tower encodes the prompts (frozen or not: gradients flow if not).
        templates: prompts with a ``{label}`` placeholder.
    """

    def __init__(self, clip: ClipModel, templates: Sequence[str]):
        super().__init__()
        if not templates or any("{label}" not in t for t in templates):
            raise ValueError(f"templates must be non-empty and each contain '{{label}}': {list(templates)}")
        self.clip = clip
        self.templates = list(templates)

    def prompts_for(self, label: str) -> list[str]:
        return [t.replace("{label}", label) for t in self.templates]

    def forward(self, labels: list[str]) -> torch.Tensor:
        """(n labels) -> (n, D) unit-norm label embeddings."""
        per_label = [self.prompts_for(label) for label in labels]
        prompts = [p for ps in per_label for p in ps]
        owner = torch.tensor(
            [i for i, ps in enumerate(per_label) for _ in ps], device=self.clip.model.token_embedding.weight.device
        )
        feats = self.clip.encode_text(self.clip.tokenize(prompts), normalize=True, trim=True)  # (n_prompts, D)
        pooled = feats.new_zeros(len(labels), feats.shape[1]).index_add(
            0, owner, feats
        )  # (n_prompts, D) -> (n, D) sums
        return F.normalize(pooled, dim=-1)  # the mean's direction; the count cancels under the norm


class FixedAttributeLabelEncoder(PromptLabelEncoder):
    """Fixed LLM attributes (paper §3.1 "Fixed LLM prompting", Menon & Vondrick): class-name prompt plus
    one prompt per attribute, mean-pooled. A label without attributes uses the class-name prompt
    alone (logged once; the labels are in ``missing``).

    Args:
        clip: the frozen CLIP.
        attributes: {label: [short visual descriptions]} (the attributes JSON).
        classname_template: the class-name prompt (``{label}``).
        attribute_template: prompt per attribute (``{label}``, ``{attribute}``).
    """

    def __init__(
        self,
        clip: ClipModel,
        attributes: Mapping[str, Sequence[str]],
        classname_template: str = "a video of {label}.",
        attribute_template: str = "{label}, which has {attribute}",
    ):
        super().__init__(clip, [classname_template])
        if "{attribute}" not in attribute_template:
            raise ValueError(f"attribute_template {attribute_template!r} has no '{{attribute}}' placeholder")
        self.attributes = {k: [a for a in v if isinstance(a, str) and a.strip()] for k, v in attributes.items()}
        self.attribute_template = attribute_template
        self.missing: set[str] = set()

    def prompts_for(self, label: str) -> list[str]:
        prompts = super().prompts_for(label)
        attrs = self.attributes.get(label, [])
        if not attrs and label not in self.missing:
            if not self.missing:
                log.warning(
                    "clip_fixed_attributes: label %r has no attributes; using its class-name prompt alone "
                    "(further labels without attributes are counted in .missing, not logged)",
                    label,
                )
            self.missing.add(label)
        return prompts + [self.attribute_template.replace("{label}", label).replace("{attribute}", a) for a in attrs]


class ContextPromptLabelEncoder(nn.Module):
    """CoOp*: M learnable context vectors shared by all labels, ``[SOT] [V]_1..[V]_M {label}. [EOT]``.

    Args:
        clip: the frozen CLIP.
        n_ctx: M context vectors.
        init_words: words whose CLIP token embeddings initialise the context when they are exactly
            M tokens (CoOp's "a photo of a"); otherwise N(0, 0.02²) as in CoOp's random init.
    """

    def __init__(self, clip: ClipModel, n_ctx: int = 4, init_words: str = ""):
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        self.clip = clip
        ctx = torch.randn(n_ctx, clip.text_width) * 0.02  # (M, W)
        if init_words:
            words = clip.word_embeddings(init_words)  # (n_words, W)
            if len(words) == n_ctx:
                ctx = words  # (M, W)
            else:
                log.warning(
                    "ctx_init %r is %d CLIP tokens, not n_ctx=%d: random context init", init_words, len(words), n_ctx
                )
        self.ctx = nn.Parameter(ctx)

    def forward(self, labels: list[str]) -> torch.Tensor:
        """(n labels) -> (n, D) unit-norm label embeddings."""
        tokens = self.clip.tokenize([f"{label}." for label in labels])  # (n, ctx)
        return self.clip.encode_text(
            tokens, soft_prompts=self.ctx, normalize=True, trim=True
        )  # (M, W) broadcast over n


class DualContextLabelEncoder(nn.Module):
    """DualCoOp*: positive and negative learnable contexts; embedding e_pos − e_neg (see module doc)."""

    def __init__(self, clip: ClipModel, n_ctx: int = 4, init_words: str = ""):
        super().__init__()
        self.positive = ContextPromptLabelEncoder(clip, n_ctx, init_words)
        self.negative = ContextPromptLabelEncoder(clip, n_ctx, "")  # random: DualCoOp learns what "absent" reads like

    def forward(self, labels: list[str]) -> torch.Tensor:
        """(n labels) -> (n, D): e_pos − e_neg, so ⟨f_v, e⟩ = s_pos − s_neg."""
        return self.positive(labels) - self.negative(labels)


# --------------------------------------------------------------------------------------------------
# Video side of ViFi-CLIP
# --------------------------------------------------------------------------------------------------
class FrameMeanVideoEncoder(nn.Module):
    """normalize(mean_f normalize(CLIP(frame_f))) with gradients into CLIP (ViFi-CLIP: no temporal module).

    Same embedding as ``VideoEncoder(use_temporal=False)``, which keeps CLIP frozen; this one trains it.
    """

    def __init__(self, clip: ClipModel):
        super().__init__()
        self.clip = clip

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) -> (B, D) unit-norm video embeddings."""
        if video.dim() != 5:
            raise ValueError(f"video must be (B, F, 3, H, W), got {tuple(video.shape)}")
        B, Fr = video.shape[:2]
        e = self.clip.encode_image(video.flatten(0, 1), normalize=True)  # (B, F, 3, H, W) -> (B*F, 3, H, W) -> (B*F, D)
        return F.normalize(e.view(B, Fr, -1).mean(dim=1), dim=-1)  # (B*F, D) -> (B, F, D) -> (B, D)


def unlock_clip(clip: ClipModel) -> ClipModel:
    """Make both CLIP towers trainable (ViFi-CLIP*); logit scale/bias stay frozen (the loss has its own τ)."""
    unlock = getattr(clip, "unlock", None)  # a ClipModel subclass may bring its own
    if callable(unlock):
        unlock()
    else:
        for p in clip.model.parameters():
            p.requires_grad = True
        clip._locked = False  # ClipModel.train() then no longer forces eval mode
    for name in ("logit_scale", "logit_bias"):
        p = getattr(clip.model, name, None)
        if isinstance(p, nn.Parameter):
            p.requires_grad = False
    return clip


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------
class Method(nn.Module):
    """A (label encoder, video encoder) pair: what the trainer trains and the evaluator scores.

    Args:
        name: method key (see :data:`ovc.models.methods.METHODS`, which builds every method).
        label_encoder: module ``(labels: list[str]) -> (L, D)``.
        video_encoder: module ``(frames (B, F, 3, H, W)) -> (B, D)``.
        unit_norm_labels: whether label embeddings are unit norm (False for DualCoOp*).
    """

    def __init__(self, name: str, label_encoder: nn.Module, video_encoder: nn.Module, unit_norm_labels: bool = True):
        super().__init__()
        self.name = name
        self.label_encoder = label_encoder
        self.video_encoder = video_encoder
        self.unit_norm_labels = unit_norm_labels

    def encode_labels(self, labels: list[str]) -> torch.Tensor:
        """(L labels) -> (L, D) label embeddings (differentiable where the method trains)."""
        return self.label_encoder(list(labels))

    def encode_videos(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) frames -> (B, D) unit-norm video embeddings."""
        return self.video_encoder(frames)

    def score(self, video_emb: torch.Tensor, label_emb: torch.Tensor) -> torch.Tensor:
        """s(ℓ, v) = ⟨f_t(ℓ), f_v(v)⟩ (paper eq. 1): (B, D), (L, D) -> (B, L)."""
        return video_emb.float() @ label_emb.float().t()  # fp32 scores whatever precision the towers ran in

    def forward(self, frames: torch.Tensor, labels: list[str]) -> torch.Tensor:
        """(B, F, 3, H, W) frames, L labels -> (B, L) scores."""
        return self.score(self.encode_videos(frames), self.encode_labels(labels))

    @torch.no_grad()
    def embed_vocabulary(self, labels: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Inference: (L labels) -> (L, D) embeddings in eval mode, in batches, without gradients."""
        was_training = self.training
        self.eval()
        try:
            chunks = [self.encode_labels(list(labels[i : i + batch_size])) for i in range(0, len(labels), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(chunks) if chunks else torch.zeros(0, 0)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer optimises (each once, even when CLIP is shared by both sides)."""
        return [p for p in self.parameters() if p.requires_grad]

    def state_dict_trainable(self) -> dict[str, torch.Tensor]:
        """Only the trained tensors (checkpoints; frozen weights come from their own files)."""
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def load_state_dict_trainable(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`state_dict_trainable` output (strict on the trained names)."""
        own = set(self.state_dict_trainable())
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if missing or unexpected:
            raise KeyError(f"{self.name}: trainable state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.load_state_dict(dict(state), strict=False)
