"""Frozen CLIP wrapper: open_clip model + tokenizer, soft-prompt text path, per-layer frame tokens.

The paper keeps CLIP frozen everywhere (paper §3): the label encoder feeds *soft prompts* into
CLIP's text transformer (§3.1) and the video encoder reads the patch tokens of CLIP's last T
vision layers (§3.2). This module exposes exactly those two entry points on top of an unmodified
open_clip ``CLIP``:

* :meth:`ClipModel.encode_text` — open_clip's text path (token + positional embedding, causal
  mask, transformer, ``ln_final``, EOT pooling, ``text_projection``) with optional soft prompts
  inserted right after the SOT token.
* :meth:`ClipModel.encode_frames` — open_clip's image path that also returns the hidden states
  of the last vision resblocks.

Weights come from ``create_clip(ClipConfig)``: ``pretrained`` is ``""`` (random init), an
open_clip hub tag (``"openai"``; fails fast offline), a checkpoint file, or
``"local-dir:/path"`` (open_clip's hf-style dir: ``open_clip_config.json`` + weights), which
:func:`save_clip_local_dir` writes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import nn

from ovc.config import ClipConfig

LOCAL_DIR_PREFIX = "local-dir:"
WEIGHTS_FILENAME = "open_clip_model.safetensors"
CONFIG_FILENAME = "open_clip_config.json"
TOKEN_MEMO_TEXTS = 65536  # texts whose token ids ClipModel.tokenize keeps (~0.6 KB each at context 77)

# ovc's own open_clip architectures (registered with open_clip at import time).
OVC_MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    # Tiny ViT for the offline synthetic world (64x64 frames); bootstrapped by `bootstrap_clip`.
    "ovc-vit-tiny": {
        "embed_dim": 128,
        "vision_cfg": {
            "image_size": 64,
            "patch_size": 8,
            "width": 192,
            "layers": 6,
            "head_width": 64,
            "mlp_ratio": 4.0,
        },
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
    },
    # Bootstrapped by `bootstrap_clip` (the offline default; a ViT, since the temporal branch reads
    # per-layer patch tokens):
    # 4 layers, width 128, patch 8: ~60 GFLOP per batch-128 step (ovc-vit-tiny: ~150).
    "ovc-vit-mini": {
        "embed_dim": 128,
        "vision_cfg": {
            "image_size": 64,
            "patch_size": 8,
            "width": 128,
            "layers": 4,
            "head_width": 64,
            "mlp_ratio": 4.0,
        },
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
    },
    # patch 4 (256 patches), narrow: ~60 GFLOP per batch-128 step.
    "ovc-vit-mini-p4": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": 64, "patch_size": 4, "width": 64, "layers": 4, "head_width": 32, "mlp_ratio": 4.0},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
    },
}


class ClipLoadError(RuntimeError):
    """CLIP weights could not be resolved (missing file/dir, hub unreachable offline, bad config)."""


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def register_model_configs(configs: dict[str, dict[str, Any]] | None = None) -> None:
    """Register ovc's open_clip model configs (idempotent) through open_clip's public ``add_model_config``.

    open_clip only scans JSON files, so each config is written (atomically) to a per-user directory
    under the temp dir and that directory is added to open_clip's search path.
    """
    configs = OVC_MODEL_CONFIGS if configs is None else configs
    missing = {k: v for k, v in configs.items() if k not in open_clip.list_models()}
    if not missing:
        return
    cfg_dir = Path(tempfile.gettempdir()) / f"ovc_open_clip_configs_{os.getuid() if hasattr(os, 'getuid') else 0}"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    for name, cfg in missing.items():
        fd, tmp = tempfile.mkstemp(dir=cfg_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent=2)
        os.replace(tmp, cfg_dir / f"{name}.json")
    open_clip.add_model_config(cfg_dir)


register_model_configs()


@dataclass
class FrameFeatures:
    """Output of :meth:`ClipModel.encode_frames`.

    Attributes:
        embeds: (B, D) final image embeddings (unnormalised, == ``CLIP.encode_image``).
        layer_tokens: the last ``return_layers`` hidden states of the vision transformer, oldest
            first, each (B, 1+N, vision_width) with the CLS token at index 0. Hidden state ``i`` is
            the *output* of resblock ``i-1``; hidden state 0 is the resblock-0 input (after
            ``ln_pre``), so ``return_layers = L+1`` returns them all (HF-style ``hidden_states``).
    """

    embeds: torch.Tensor
    layer_tokens: list[torch.Tensor]


class ClipModel(nn.Module):
    """A frozen-by-choice open_clip ``CLIP`` with soft-prompt text encoding and per-layer frame tokens.

    Args:
        model: an open_clip ``CLIP`` (built-in text tower; ``CustomTextCLIP`` is not supported
            because the soft-prompt path needs the token embedding table).
        tokenizer: open_clip tokenizer for ``model``.
        model_name: architecture name (for saving / messages).
    """

    def __init__(self, model: CLIP, tokenizer: Any, model_name: str = ""):
        super().__init__()
        if not isinstance(model, CLIP) or not hasattr(model, "token_embedding"):
            raise TypeError(f"ClipModel needs an open_clip CLIP with a built-in text tower, got {type(model).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self._locked = False
        self._token_ids: dict[str, torch.Tensor] = {}  # text -> (ctx,) ids: a vocabulary is tokenized once (tokenize)
        visual = model.visual
        if not hasattr(visual, "transformer") or getattr(visual, "attn_pool", None) is not None:
            raise TypeError("ClipModel needs an open_clip VisionTransformer tower without attentional pooling")
        self.embed_dim = int(visual.output_dim)
        self.text_width = int(model.token_embedding.weight.shape[1])
        self.vision_width = int(visual.transformer.width)
        self.vision_layers = len(visual.transformer.resblocks)
        self.context_length = int(model.context_length)
        self.image_size = tuple(visual.image_size)
        pp = getattr(visual, "preprocess_cfg", {}) or {}
        self.image_mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.image_std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))

    # ------------------------------------------------------------------ freezing
    def lock(self) -> ClipModel:
        """Freeze every CLIP parameter and keep CLIP in eval mode even under a parent's ``.train()``."""
        for p in self.model.parameters():
            p.requires_grad = False
        self._locked = True
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> ClipModel:
        super().train(mode)
        if self._locked:
            self.model.eval()  # frozen CLIP never runs patch dropout / dropout
        return self

    @property
    def visual(self) -> Any:
        """The vision tower (``conv1``, ``transformer.resblocks``, ``ln_post``, ``proj``...)."""
        # Any: open_clip's VisionTransformer reaches its sub-modules through nn.Module.__getattr__,
        # which mypy types as ``Tensor | Module``; every caller indexes into them.
        return self.model.visual

    # ------------------------------------------------------------------ text
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(B,) strings -> (B, context_length) LongTensor: [SOT, tokens..., EOT, 0...] (truncated, EOT kept).

        The ids stay on the CPU: :meth:`encode_text` reads the EOT positions there (no device sync
        per call) and moves the ids to the model's device itself. Each text's ids are memoised
        (up to :data:`TOKEN_MEMO_TEXTS` texts): training batches and the val curve tokenize the same
        labels and prompts over and over. The result is a new tensor; the memo is never handed out."""
        texts = list(texts)
        if not texts:
            return self.tokenizer(texts)
        new = [t for t in dict.fromkeys(texts) if t not in self._token_ids]
        if new:
            if len(self._token_ids) + len(new) > TOKEN_MEMO_TEXTS:
                self._token_ids.clear()  # unbounded user vocabularies (serving) must not grow it forever
            self._token_ids.update(zip(new, self.tokenizer(new)))  # (n_new, ctx) -> n_new x (ctx,)
        return torch.stack([self._token_ids[t] for t in texts])  # B x (ctx,) -> (B, ctx)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, ctx) token ids -> (B, ctx, text_width) token embeddings (no positions)."""
        return self.model.token_embedding(tokens.to(self.model.token_embedding.weight.device))

    def word_embeddings(self, words: str) -> torch.Tensor:
        """(n, text_width) token embeddings of ``words`` between SOT and EOT (a detached copy):
        how CoOp-style contexts and the label encoder's soft prompts start from real words."""
        tokens = self.tokenize([words])  # (1, ctx)
        n = int(self._eot_index(tokens)[0]) - 1  # tokens between SOT and EOT
        return self.token_embeddings(tokens)[0, 1 : 1 + n].detach().clone().float()  # (1, ctx, W) -> (n, W)

    def _eot_index(self, tokens: torch.Tensor) -> torch.Tensor:
        pool = self.model.text_pool_type
        if pool == "argmax":
            return tokens.argmax(dim=-1)
        if pool == "eos":
            return (tokens == self.model.text_eos_id).int().argmax(dim=-1)
        raise NotImplementedError(f"text_pool_type={pool!r} is not supported by the soft-prompt text path")

    def encode_text(
        self, tokens: torch.Tensor, soft_prompts: torch.Tensor | None = None, normalize: bool = True, trim: bool = False
    ) -> torch.Tensor:
        """Encode token ids, optionally with soft prompts inserted right after SOT (paper §3.1).

        Sequence with P prompts: [SOT, p_1..p_P, label tokens..., EOT, pad...], cut to the context
        length; if the label no longer fits, its last tokens are dropped and EOT is kept at the last
        position. Pooling reads the (shifted) EOT position, as open_clip's ``text_global_pool``.

        Args:
            tokens: (B, ctx) ids from :meth:`tokenize`.
            soft_prompts: None, (B, P, text_width) or (P, text_width) (broadcast over B).
            normalize: L2-normalise the output.
            trim: run the transformer only up to the batch's last EOT position. With the causal mask
                later positions never reach the pooled EOT states, so the result is the same up to
                float rounding (~1e-6), and short labels cost a fraction of the full context.
        Returns:
            (B, embed_dim) text features.
        """
        m = self.model
        ctx = tokens.shape[1]
        if ctx != self.context_length:
            raise ValueError(f"tokens have length {ctx}, CLIP context length is {self.context_length}")
        device = m.token_embedding.weight.device
        tokens = tokens.cpu()  # EOT positions and the trim length are read on the host
        eot = self._eot_index(tokens)  # (B,)
        if soft_prompts is None:
            x = m.token_embedding(tokens.to(device))  # (B, ctx, W)
        else:
            if soft_prompts.dim() == 2:
                soft_prompts = soft_prompts.unsqueeze(0).expand(tokens.shape[0], -1, -1)  # (P, W) -> (B, P, W)
            B, P, W = soft_prompts.shape
            if B != tokens.shape[0] or W != self.text_width:
                raise ValueError(
                    f"soft_prompts {tuple(soft_prompts.shape)} do not match tokens {tuple(tokens.shape)} / width {self.text_width}"
                )
            if P > ctx - 2:
                raise ValueError(f"{P} soft prompts leave no room for SOT/EOT in context length {ctx}")
            tail = tokens[:, 1 : ctx - P].clone()  # (B, ctx-1-P): original positions 1.. shifted by P
            overflow = eot + P > ctx - 1  # EOT would fall off the end: drop label tokens, keep EOT last
            if bool(overflow.any()):
                rows = overflow.nonzero(as_tuple=True)[0]
                tail[rows, -1] = tokens[rows, eot[rows]]
            eot = torch.clamp(eot + P, max=ctx - 1)
            x = torch.cat(
                [
                    m.token_embedding(tokens[:, :1].to(device)),
                    soft_prompts.to(m.token_embedding.weight.dtype),
                    m.token_embedding(tail.to(device)),
                ],
                dim=1,
            )  # (B, 1 + P + ctx-1-P, W) = (B, ctx, W)
        cast_dtype = m.transformer.get_cast_dtype()
        mask = m.attn_mask
        if trim and mask is not None:
            # Causal attention: positions after the last EOT never influence the pooled EOT states,
            # so the batch runs on its longest sequence instead of the full context (same result).
            n = int(eot.max()) + 1
            x, mask = x[:, :n], mask[:n, :n]  # (B, ctx, W) -> (B, n, W)
        x = x.to(cast_dtype) + m.positional_embedding[: x.shape[1]].to(cast_dtype)
        x = m.transformer(x, attn_mask=mask)
        x = m.ln_final(x)  # (B, n, W)
        x = x[torch.arange(x.shape[0], device=x.device), eot.to(x.device)]  # (B, W)
        if m.text_projection is not None:
            x = m.text_projection(x) if isinstance(m.text_projection, nn.Linear) else x @ m.text_projection
        return F.normalize(x, dim=-1) if normalize else x

    # ------------------------------------------------------------------ images
    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, 3, H, W) -> (B, embed_dim), open_clip's ``encode_image`` (input cast to the tower's
        dtype, so ``clip.precision`` fp16/bf16 towers take the loaders' float32 frames)."""
        return self.model.encode_image(images.to(self.model.visual.conv1.weight.dtype), normalize=normalize)

    def encode_frames(self, images: torch.Tensor, return_layers: int = 0) -> FrameFeatures:
        """Encode images and keep the hidden states of the last ``return_layers`` vision layers.

        Same computation as open_clip's ``VisionTransformer.forward`` (``_embeds`` -> resblocks ->
        ``_pool`` -> ``proj``); patch dropout is the identity in eval mode.

        Args:
            images: (B, 3, H, W) preprocessed frames.
            return_layers: how many hidden states to return (see :class:`FrameFeatures`); at most L+1.
        """
        v = self.model.visual
        L = self.vision_layers
        if not 0 <= return_layers <= L + 1:
            raise ValueError(f"return_layers must be in [0, {L + 1}], got {return_layers}")
        x = v._embeds(images.to(v.conv1.weight.dtype))  # (B, 1+N, W), in the tower's precision
        keep_from = L + 1 - return_layers  # hidden-state index of the first kept state
        hidden: list[torch.Tensor] = [x] if keep_from == 0 else []
        batch_first = getattr(v.transformer, "batch_first", True)
        for i, blk in enumerate(v.transformer.resblocks):
            if batch_first:
                x = blk(x)
            else:
                x = blk(x.transpose(0, 1)).transpose(0, 1)  # (B, S, W) -> (S, B, W) -> back
            if i + 1 >= keep_from:
                hidden.append(x)
        pooled, _ = v._pool(x)  # (B, W) CLS after ln_post
        if v.proj is not None:
            pooled = pooled @ v.proj  # (B, W) -> (B, D)
        return FrameFeatures(embeds=pooled, layer_tokens=hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images, normalize=True)


# ---------------------------------------------------------------------- construction / IO
def _load_model(model_name: str, pretrained: str, precision: str, device: str | torch.device) -> tuple[CLIP, str]:
    """Build the open_clip model; returns (model, the name for ``get_tokenizer``)."""
    if pretrained.startswith(LOCAL_DIR_PREFIX):
        path = Path(pretrained[len(LOCAL_DIR_PREFIX) :]).expanduser()
        if not (path / CONFIG_FILENAME).is_file():
            raise ClipLoadError(
                f"CLIP local dir {path} has no {CONFIG_FILENAME}; write one with ovc.models.clip.save_clip_local_dir"
            )
        model = open_clip.create_model(f"{LOCAL_DIR_PREFIX}{path}", precision=precision, device=device)
        return model, f"{LOCAL_DIR_PREFIX}{path}"
    if model_name not in open_clip.list_models():
        raise ClipLoadError(
            f"unknown open_clip model {model_name!r}; known: {', '.join(open_clip.list_models()[:20])}..."
        )
    if not pretrained:
        return open_clip.create_model(model_name, pretrained=None, precision=precision, device=device), model_name
    if os.path.isfile(pretrained):
        return open_clip.create_model(model_name, pretrained=pretrained, precision=precision, device=device), model_name
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    hint = (
        f"pretrained={pretrained!r} for {model_name} needs a download; provide pretrained=/path/to/{model_name}.pt "
        f"(or .bin/.safetensors) or pretrained=local-dir:/path/to/dir (with {CONFIG_FILENAME} + weights)"
    )
    if not tag_cfg:
        if pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")) or os.sep in pretrained:
            raise ClipLoadError(f"CLIP weights file not found: {pretrained}")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ClipLoadError(
            f"pretrained={pretrained!r} is neither a file nor a known tag of {model_name} (tags: {tags})"
        )
    if _hub_offline() and not tag_cfg.get("hf_hub"):
        raise ClipLoadError(f"HF_HUB_OFFLINE is set: {hint}")  # URL downloads ignore HF_HUB_OFFLINE and would hang
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained, precision=precision, device=device)
    except Exception as e:  # hub miss offline: LocalEntryNotFoundError wrapped in RuntimeError
        raise ClipLoadError(f"{hint} ({type(e).__name__}: {e})") from e
    return model, model_name


def create_clip(cfg: ClipConfig, device: str | torch.device = "cpu", lock: bool = True) -> ClipModel:
    """Build a :class:`ClipModel` from a :class:`~ovc.config.ClipConfig`.

    Args:
        cfg: ``model`` (open_clip name, ovc's registered ones included), ``pretrained`` (``""`` =
            random init, hub tag, checkpoint file, or ``local-dir:/path``), ``precision``.
        device: torch device.
        lock: freeze CLIP (the paper's setting everywhere).
    Raises:
        ClipLoadError: weights cannot be found (offline hub access fails fast, naming what to provide).
    """
    model, tok_name = _load_model(cfg.model, cfg.pretrained or "", cfg.precision, device)
    tokenizer = open_clip.get_tokenizer(tok_name)
    clip = ClipModel(model, tokenizer, model_name=cfg.model)
    if lock:
        clip.lock()
    return clip


def build_clip(
    model_name: str, pretrained: str = "", device: str | torch.device = "cpu", precision: str = "fp32"
) -> ClipModel:
    """Shorthand for ``create_clip(ClipConfig(model_name, pretrained, precision))``."""
    return create_clip(ClipConfig(model=model_name, pretrained=pretrained, precision=precision), device=device)


def save_clip_local_dir(model: ClipModel | CLIP, model_name: str, out_dir: str | os.PathLike) -> Path:
    """Save a CLIP as open_clip's ``local-dir:`` format: ``open_clip_config.json`` + safetensors weights.

    The model config is the registered config of ``model_name`` (or, for a ClipModel loaded from a
    local dir, that dir's config); preprocessing (mean/std/size) comes from the model. Files are
    written to temp names and renamed (atomic per file).

    Returns:
        ``out_dir`` as a Path; load back with ``create_clip(ClipConfig(pretrained=f"local-dir:{out_dir}"))``.
    """
    from safetensors.torch import save_file

    clip_model = model.model if isinstance(model, ClipModel) else model
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise ClipLoadError(f"no open_clip config for {model_name!r}; cannot write {CONFIG_FILENAME}")
    pp = dict(getattr(clip_model.visual, "preprocess_cfg", {}) or {})
    pp.setdefault("size", list(clip_model.visual.image_size))
    for k, v in list(pp.items()):
        if isinstance(v, tuple):
            pp[k] = list(v)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in clip_model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
    os.close(fd)
    save_file(state, tmp, metadata={"format": "pt", "model_name": model_name})
    os.replace(tmp, out / WEIGHTS_FILENAME)
    cfg_json = {"model_cfg": model_cfg, "preprocess_cfg": pp, "ovc_model_name": model_name}
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(cfg_json, f, indent=2)
    os.replace(tmp, out / CONFIG_FILENAME)
    return out
