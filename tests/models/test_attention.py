"""The lean multi-head attention equals nn.MultiheadAttention's own forward (values and gradients)."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from ovc.models.attention import multihead_attention, reference_attention


def _pair(seed: int = 0) -> tuple[nn.MultiheadAttention, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(32, 4, batch_first=True)
    nn.init.normal_(mha.in_proj_bias, std=0.1)
    return mha, torch.randn(6, 9, 32, requires_grad=True), torch.randn(6, 13, 32, requires_grad=True)


@pytest.mark.parametrize("cross", [False, True])
def test_lean_attention_matches_module_forward(cross):
    mha, q, kv = _pair()
    kv = kv if cross else q
    ref = mha(q, kv, kv, need_weights=False)[0]
    out = multihead_attention(mha, q, kv)
    assert out.shape == ref.shape == (6, 9, 32)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grads = [
        torch.autograd.grad((o * torch.linspace(-1, 1, 32)).sum(), [q, mha.in_proj_weight, mha.out_proj.weight])
        for o in (out, ref)
    ]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_reference_switch_and_functional_call():
    mha, q, _ = _pair(1)
    with reference_attention():  # the straightforward path the train_step bench times
        ref = multihead_attention(mha, q, q)
    torch.testing.assert_close(ref, mha(q, q, q, need_weights=False)[0])
    # functional_call swaps the parameters the lean path reads (the temporal branch's weight regularisation)
    params = {n: p * 0.5 for n, p in mha.named_parameters()}
    out = functional_call(mha, params, (q, q, q), {"need_weights": False})[0]

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return multihead_attention(self.attn, x, x)

    lean = functional_call(Wrap(), {f"attn.{n}": p for n, p in params.items()}, (q,))
    torch.testing.assert_close(lean, out, atol=1e-5, rtol=1e-5)
