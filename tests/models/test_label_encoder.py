"""Label encoder (paper §3.1 / Fig. 3): LLM prefixes -> prompt transformer -> frozen CLIP text encoder."""

from __future__ import annotations

import pytest
import torch

from ovc.config import ClipConfig, Config, LabelEncoderConfig, LLMConfig
from ovc.models.clip import create_clip
from ovc.models.label_encoder import LabelEncoder, PromptTransformer, create_label_encoder
from ovc.models.llm import create_llm, tiny_t5

LABELS = ["dog", "a person playing the violin", "red", "rotating square", "kitchen"]


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return create_clip(ClipConfig(model="ovc-vit-tiny", pretrained=""))


@pytest.fixture(scope="module")
def encoder(clip) -> LabelEncoder:
    """Tiny T5 backend (fast); the MiniLM default is covered by test_default_minilm_encoder."""
    torch.manual_seed(0)
    model, tokenizer = tiny_t5()
    llm = create_llm(LLMConfig(backend="seq2seq", n_prefixes=2, k_attributes=2, l_tokens=3), model, tokenizer)
    # random prompt init: the LLM-conditioned path carries gradients from the first step
    return LabelEncoder(llm, clip, LabelEncoderConfig(width=32, layers=1, heads=2, prompt_len=3, prompt_init=""))


def test_shape_and_unit_norm(encoder):
    f = encoder(LABELS)
    assert f.shape == (len(LABELS), encoder.embed_dim)
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(len(LABELS)))
    assert (f[0] - f[1]).abs().max() > 1e-3


def test_gradients_reach_prefixes_and_prompt_transformer_only(encoder):
    encoder.zero_grad(set_to_none=True)
    encoder(LABELS[:2]).sum().backward()
    with_grad = {n for n, p in encoder.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "llm.prefixes" in with_grad
    assert {n for n, _ in encoder.prompt_transformer.named_parameters()} == {
        n.removeprefix("prompt_transformer.") for n in with_grad if n.startswith("prompt_transformer.")
    }
    assert not any(n.startswith(("llm.llm.", "clip.")) for n in with_grad)
    assert all(not p.requires_grad for p in encoder.clip.parameters())
    assert all(not p.requires_grad for p in encoder.llm.llm.parameters())
    encoder.zero_grad(set_to_none=True)


def test_batched_equals_one_by_one_and_encode_labels(encoder):
    encoder.eval()
    with torch.no_grad():
        single = torch.cat([encoder([label]) for label in LABELS])
        batched = encoder(LABELS)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    encoder.train()
    table = encoder.encode_labels(LABELS, batch_size=2)  # 3 batches, no grad, back to train mode after
    assert encoder.training and not table.requires_grad
    torch.testing.assert_close(table, single, atol=1e-5, rtol=0)
    assert encoder.encode_labels([]).shape == (0, encoder.embed_dim)


def test_prompt_transformer_maps_attributes_to_clip_token_space():
    pt = PromptTransformer(d_llm=16, text_width=24, l_tokens=3, prompt_len=5, width=32, layers=2, heads=4, out_std=0.02)
    out = pt(torch.randn(7, 3, 16))
    assert out.shape == (7, 5, 24)
    assert 0.005 < out.std().item() < 0.08  # starts near CLIP token-embedding scale
    with pytest.raises(ValueError, match="divisible"):
        PromptTransformer(16, 24, 3, 5, width=30, heads=4)


def test_default_minilm_encoder(clip):
    """The offline default: packaged MiniLM (masked-encoder) with the config's N, K, L."""
    torch.manual_seed(0)
    cfg = Config()
    enc = create_label_encoder(cfg, clip)
    f = enc(["dog", "guitar"])
    assert f.shape == (2, clip.embed_dim) and enc.n_features == cfg.llm.n_prefixes * cfg.llm.k_attributes
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(2))
    f.sum().backward()
    # default word init: the zero readout learns first, then gradients reach the prefixes
    assert enc.prompt_transformer.proj_out.weight.grad.abs().sum() > 0
    torch.optim.SGD([enc.prompt_transformer.proj_out.weight], lr=1.0).step()
    enc.zero_grad(set_to_none=True)
    enc(["dog", "guitar"]).sum().backward()
    assert enc.llm.prefixes.grad.abs().sum() > 0


def test_benchmark_quick_smoke():
    from ovc.bench.label_encoder import bench_label_encoder

    out = bench_label_encoder(quick=True)
    for key in ("speedup_vs_loop", "seconds_batched", "loop_seconds_extrapolated", "note"):
        assert key in out
    assert out["max_abs_diff_batched_vs_loop"] < 1e-5


def test_word_init_starts_at_the_zero_shot_prompt_and_then_learns(clip):
    """prompt_init: every label starts exactly as CLIP's "a video of a {label}"; after one step the
    LLM-conditioned part is live (gradients reach the prefixes)."""
    torch.manual_seed(0)
    model, tokenizer = tiny_t5()
    llm = create_llm(LLMConfig(backend="seq2seq", n_prefixes=2, k_attributes=2, l_tokens=3), model, tokenizer)
    enc = LabelEncoder(
        llm, clip, LabelEncoderConfig(width=32, layers=1, heads=2, prompt_len=4, prompt_init="a video of a")
    )
    labels = LABELS[:3]
    with torch.no_grad():
        plain = clip.encode_text(clip.tokenize([f"a video of a {label}" for label in labels]), normalize=True)
        torch.testing.assert_close(enc(labels), plain, atol=1e-5, rtol=0)
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        opt.zero_grad(set_to_none=True)
        enc(labels)[:, 0].sum().backward()
        grad = enc.llm.prefixes.grad
        if step == 0:
            assert grad is None or grad.abs().sum() == 0  # zero readout: nothing reaches the LLM yet
        else:
            assert grad is not None and grad.abs().sum() > 0
        opt.step()
    assert enc.prompt_transformer.proj_out.weight.abs().sum() > 0

    with pytest.raises(ValueError, match="prompt_len=3"):
        LabelEncoder(
            llm, clip, LabelEncoderConfig(width=32, layers=1, heads=2, prompt_len=3, prompt_init="a video of a")
        )
