"""Lean multi-head attention on an ``nn.MultiheadAttention``'s own parameters (same result, fewer copies).

``nn.MultiheadAttention.forward`` in training goes through ``F.multi_head_attention_forward``: the
batch-first input is transposed to sequence-first, the packed in-projection is split with
``unflatten -> unsqueeze -> transpose -> contiguous`` and the heads are re-laid out again; in the
backward every one of those views becomes a zero-filled gradient buffer plus a copy. For the temporal
branch's many short sequences (1,024 sequences of 8 frames, 128 frames of 66 tokens per batch of 16
videos) those copies and fills cost more than the attention itself (profile of one ``ours`` step,
``ovc bench train_step``). :func:`multihead_attention` computes the same attention with one packed
``linear`` for Q, K and V, one ``scaled_dot_product_attention`` in the (B, heads, S, d) layout it
wants, and the output projection: same parameters (state dicts unchanged), same result up to float
rounding (~1e-6; ``tests/models/test_attention.py``).

:func:`reference_attention` switches every call back to the module's own forward: the straightforward
path that ``ovc bench train_step`` times side by side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_REFERENCE = False  # True inside reference_attention(): call nn.MultiheadAttention.forward instead


@contextlib.contextmanager
def reference_attention() -> Iterator[None]:
    """Within this block :func:`multihead_attention` calls ``nn.MultiheadAttention.forward`` (benchmarks, tests)."""
    global _REFERENCE
    before, _REFERENCE = _REFERENCE, True
    try:
        yield
    finally:
        _REFERENCE = before


def multihead_attention(mha: nn.MultiheadAttention, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
    """``mha(query, key_value, key_value, need_weights=False)[0]`` without its layout copies.

    Args:
        mha: a batch-first ``nn.MultiheadAttention`` with packed in-projection (kdim == vdim == embed_dim),
            no bias_k/bias_v, no masks (what the temporal branch and CLIP's resblocks use).
        query: (B, Sq, E).
        key_value: (B, Sk, E); pass ``query`` itself for self-attention (one packed projection).

    Returns:
        (B, Sq, E) attention output (after ``out_proj``).
    """
    if _REFERENCE or not _lean_ok(mha):
        return mha(query, key_value, key_value, need_weights=False)[0]
    B, Sq, E = query.shape
    H = mha.num_heads
    d = E // H
    w, b = mha.in_proj_weight, mha.in_proj_bias
    dropout = mha.dropout if mha.training else 0.0
    if key_value is query:
        qkv = F.linear(query, w, b).view(B, Sq, 3, H, d).permute(2, 0, 3, 1, 4)  # (B, S, 3E) -> (3, B, H, S, d)
        q, k, v = qkv.unbind(0)
    else:
        Sk = key_value.shape[1]
        wq, wkv = w.split([E, 2 * E])
        bq, bkv = (None, None) if b is None else b.split([E, 2 * E])
        q = F.linear(query, wq, bq).view(B, Sq, H, d).transpose(1, 2)  # (B, Sq, E) -> (B, H, Sq, d)
        k, v = F.linear(key_value, wkv, bkv).view(B, Sk, 2, H, d).permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, Sk, d)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (B, H, Sq, d)
    out = out.transpose(1, 2).reshape(B, Sq, E)  # (B, H, Sq, d) -> (B, Sq, H, d) -> (B, Sq, E)
    return mha.out_proj(out)


def _lean_ok(mha: nn.MultiheadAttention) -> bool:
    """Whether the lean path covers this module (otherwise its own forward runs)."""
    return bool(
        mha.batch_first
        and mha._qkv_same_embed_dim
        and mha.bias_k is None
        and mha.bias_v is None
        and not mha.add_zero_attn
        and mha.in_proj_weight is not None
    )
