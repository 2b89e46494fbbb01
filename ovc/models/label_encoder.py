"""Label encoder: frozen LLM with learnable prefixes -> prompt transformer -> frozen CLIP text encoder.

Paper §3.1 / Fig. 3. For a label ℓ and each of the N learnable LLM prefixes, the frozen LLM yields
K soft attributes of L vectors (:mod:`ovc.models.llm`). The small trainable *prompt transformer*
maps each soft attribute to ``prompt_len`` soft-prompt vectors in CLIP's token-embedding space; each
soft prompt is inserted after SOT in front of the label's own CLIP tokens and run through the
frozen CLIP text transformer (:meth:`ovc.models.clip.ClipModel.encode_text`). The N·K features are
L2-normalised, mean-pooled and L2-normalised again: f_t(ℓ) ∈ R^D, unit norm.

Trainable: the N prefixes and the prompt transformer. Frozen: the LLM and CLIP (pass a locked
``ClipModel``, as :func:`ovc.models.clip.create_clip` returns by default).

    enc = create_label_encoder(cfg, clip)
    f = enc(["dog", "rotating"])                   # (2, D), differentiable
    table = enc.encode_labels(vocab, batch_size=64)  # (V, D), no grad, for the registry
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ovc.config import Config, LabelEncoderConfig
from ovc.models.clip import ClipModel
from ovc.models.llm import LLMBackend, create_llm


class PromptTransformer(nn.Module):
    """Maps one soft attribute (L LLM vectors) to ``prompt_len`` CLIP soft-prompt vectors (paper §3.1).

    Input LayerNorm (the two LLM backends' output scales differ) -> Linear d_llm->width, plus a
    learned position per input vector; ``prompt_len`` learned query tokens are appended and the
    sequence goes through a pre-norm bidirectional transformer; the outputs at the query positions
    -> LayerNorm -> Linear width->text_width are the soft prompts. Queries (rather than reusing the
    L outputs) decouple ``prompt_len`` from L. The output projection starts at the scale of CLIP's
    token embeddings (``out_std``), so the first soft prompts look like ordinary tokens to CLIP.

    With ``init_prompt`` (the CLIP token embeddings of words such as "a video of a") the soft prompts
    are ``init_prompt + proj_out(...)`` with ``proj_out`` zero-initialised: every label starts at the
    plain prompt "a video of a {label}" (CLIP's zero-shot prompt) and the LLM-conditioned part grows
    from 0 during training — the same start-at-the-frozen-baseline principle as the temporal
    branch's zero-initialised readout (§3.2). The paper does not state the prompt transformer's
    init; with a short training budget a random start lands below the zero-shot prompt.

    Args:
        d_llm: LLM hidden size.
        text_width: CLIP text width (token-embedding size).
        l_tokens: L vectors per soft attribute.
        prompt_len: soft-prompt vectors produced per attribute.
        width, layers, heads: transformer size.
        out_std: per-dimension std of the initial soft prompts (random start).
        init_prompt: (prompt_len, text_width) word embeddings the soft prompts start as, or None.
    """

    def __init__(
        self,
        d_llm: int,
        text_width: int,
        l_tokens: int,
        prompt_len: int,
        width: int = 256,
        layers: int = 1,
        heads: int = 4,
        out_std: float = 0.02,
        init_prompt: torch.Tensor | None = None,
    ):
        super().__init__()
        if width % heads:
            raise ValueError(f"label_encoder.width={width} is not divisible by heads={heads}")
        self.l_tokens, self.prompt_len = l_tokens, prompt_len
        self.ln_in = nn.LayerNorm(d_llm)
        self.proj_in = nn.Linear(d_llm, width)
        self.pos = nn.Parameter(torch.randn(l_tokens, width) * 0.02)  # (L, width)
        self.queries = nn.Parameter(torch.randn(prompt_len, width) * 0.02)  # (P, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, text_width)
        nn.init.zeros_(self.proj_out.bias)
        self.prompt_base: nn.Parameter | None = None
        if init_prompt is None:
            nn.init.normal_(self.proj_out.weight, std=out_std / math.sqrt(width))  # LN output has unit per-dim scale
        else:
            if tuple(init_prompt.shape) != (prompt_len, text_width):
                raise ValueError(
                    f"init_prompt has shape {tuple(init_prompt.shape)}, expected (prompt_len, text_width) = ({prompt_len}, {text_width})"
                )
            nn.init.zeros_(self.proj_out.weight)  # LLM-conditioned part starts at 0
            self.prompt_base = nn.Parameter(init_prompt.detach().clone().float())  # (P, text_width)

    def forward(self, attributes: torch.Tensor) -> torch.Tensor:
        """(B, L, d_llm) soft attributes -> (B, prompt_len, text_width) soft prompts."""
        x = self.proj_in(self.ln_in(attributes)) + self.pos  # (B, L, d_llm) -> (B, L, width)
        q = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1)  # (P, width) -> (B, P, width)
        x = self.blocks(torch.cat([x, q], dim=1))  # (B, L+P, width)
        prompts = self.proj_out(self.ln_out(x[:, self.l_tokens :]))  # (B, P, width) -> (B, P, text_width)
        return prompts if self.prompt_base is None else prompts + self.prompt_base  # (P, text_width) broadcast


class LabelEncoder(nn.Module):
    """f_t(ℓ): LLM soft attributes -> prompt transformer -> frozen CLIP text encoder -> mean -> L2 norm.

    Args:
        llm: an :class:`~ovc.models.llm.LLMBackend` (frozen LLM + N prefixes).
        clip: a (locked) :class:`~ovc.models.clip.ClipModel`; its text tower encodes the soft prompts.
        cfg: prompt-transformer size and ``prompt_len``.
    """

    def __init__(self, llm: LLMBackend, clip: ClipModel, cfg: LabelEncoderConfig | None = None):
        super().__init__()
        cfg = cfg or LabelEncoderConfig()
        self.llm = llm
        self.clip = clip
        token_std = float(clip.model.token_embedding.weight.detach().float().std())
        init_prompt = None
        if cfg.prompt_init:
            init_prompt = clip.word_embeddings(cfg.prompt_init)  # (n_words, text_width)
            if len(init_prompt) != cfg.prompt_len:
                raise ValueError(
                    f"label_encoder.prompt_init={cfg.prompt_init!r} is {len(init_prompt)} CLIP tokens but "
                    f"label_encoder.prompt_len={cfg.prompt_len}; give {cfg.prompt_len} tokens' worth of words or set prompt_init=''"
                )
        self.prompt_transformer = PromptTransformer(
            d_llm=llm.d_model,
            text_width=clip.text_width,
            l_tokens=llm.l_tokens,
            prompt_len=cfg.prompt_len,
            width=cfg.width,
            layers=cfg.layers,
            heads=cfg.heads,
            out_std=token_std,
            init_prompt=init_prompt,
        )

    @property
    def n_features(self) -> int:
        """N·K CLIP features pooled per label."""
        return self.llm.n_prefixes * self.llm.k_attributes

    @property
    def embed_dim(self) -> int:
        return self.clip.embed_dim

    def forward(self, labels: list[str]) -> torch.Tensor:
        """Label embeddings f_t(ℓ).

        Args:
            labels: n label names.

        Returns:
            (n, D) unit-norm embeddings; differentiable w.r.t. the prefixes and prompt transformer.
        """
        n, nk = len(labels), self.n_features
        attributes = self.llm(labels)  # (n, N, K, L, d_llm)
        attributes = attributes.flatten(0, 2)  # (n, N, K, L, d) -> (n*N*K, L, d)
        prompts = self.prompt_transformer(attributes)  # (n*N*K, P, text_width)
        tokens = self.clip.tokenize(labels).repeat_interleave(nk, dim=0)  # (n, ctx) -> (n*N*K, ctx)
        features = self.clip.encode_text(tokens, soft_prompts=prompts, normalize=True, trim=True)  # (n*N*K, D)
        pooled = features.view(n, nk, -1).mean(dim=1)  # (n*N*K, D) -> (n, N*K, D) -> (n, D)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def encode_labels(self, labels: list[str], batch_size: int = 64) -> torch.Tensor:
        """Inference: embed many labels in batches, without gradients, in eval mode.

        Args:
            labels: label names.
            batch_size: labels per forward pass (each is N·K CLIP text sequences).

        Returns:
            (len(labels), D) unit-norm embeddings on the module's device.
        """
        was_training = self.training
        self.eval()
        try:
            out = [self(list(labels[i : i + batch_size])) for i in range(0, len(labels), batch_size)]
        finally:
            self.train(was_training)
        if not out:
            return self.llm.prefixes.new_zeros(0, self.embed_dim)
        return torch.cat(out)


def create_label_encoder(cfg: Config, clip: ClipModel, llm: LLMBackend | None = None) -> LabelEncoder:
    """Label encoder from the ``llm`` and ``label_encoder`` config sections.

    Args:
        cfg: the whole config.
        clip: the (locked) CLIP whose text tower is shared with the label encoder.
        llm: a prebuilt backend (e.g. a tiny T5 in tests); default ``create_llm(cfg.llm)``.
    """
    llm = llm if llm is not None else create_llm(cfg.llm)
    return LabelEncoder(llm, clip, cfg.label_encoder).to(clip.model.token_embedding.weight.device)
