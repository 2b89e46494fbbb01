"""ovc.models.clip: open_clip parity, soft-prompt insertion, locking, local-dir round trip, offline errors."""

from __future__ import annotations

import pytest
import torch

from ovc.config import ClipConfig
from ovc.models.clip import ClipLoadError, ClipModel, build_clip, create_clip, save_clip_local_dir


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    torch.manual_seed(0)
    return build_clip("ovc-vit-tiny")


def test_registered_tiny_config(clip: ClipModel):
    assert (clip.embed_dim, clip.text_width, clip.vision_width, clip.context_length) == (128, 128, 192, 32)
    assert clip.image_size == (64, 64) and clip.vision_layers == 6
    assert len(clip.image_mean) == 3 and len(clip.image_std) == 3


def test_encode_text_matches_open_clip(clip: ClipModel):
    tokens = clip.tokenize(["a red circle moving left", "a dog", ""])
    assert tokens.shape == (3, 32) and tokens.dtype == torch.long
    with torch.no_grad():
        ours = clip.encode_text(tokens, normalize=False)
        ref = clip.model.encode_text(tokens)
        again = clip.encode_text(tokens, normalize=False)
    assert (ours - ref).abs().max().item() <= 1e-6
    assert torch.equal(ours, again)  # deterministic
    assert torch.allclose(clip.encode_text(tokens).norm(dim=-1), torch.ones(3), atol=1e-5)


def test_tokenize_memoises_each_text_and_returns_fresh_ids(clip: ClipModel, monkeypatch):
    """A vocabulary is tokenized once (training batches and the val curve re-ask for the same
    labels); the ids equal open_clip's tokenizer's, and mutating a result never reaches the memo."""
    import ovc.models.clip as clip_module

    texts = ["a red circle.", "a dog.", "a red circle."]
    ref = clip.tokenizer(texts)
    asked: list[list[str]] = []
    tokenizer = clip.tokenizer
    monkeypatch.setattr(clip, "tokenizer", lambda t: asked.append(list(t)) or tokenizer(t))
    clip._token_ids.clear()
    first = clip.tokenize(texts)
    assert torch.equal(first, ref) and asked == [["a red circle.", "a dog."]]  # each text once
    first.zero_()
    assert torch.equal(clip.tokenize(["a dog.", "a red circle."]), ref[[1, 0]]) and len(asked) == 1
    monkeypatch.setattr(clip_module, "TOKEN_MEMO_TEXTS", 3)
    clip.tokenize(["x.", "y."])  # 2 + 2 > 3: the memo starts over instead of growing
    assert sorted(clip._token_ids) == ["x.", "y."]
    assert clip.tokenize([]).shape[0] == 0


def _manual_sequence(clip: ClipModel, tokens: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Reference for one row: build [SOT, prompts, label..., EOT] by hand and run CLIP's text layers."""
    m = clip.model
    ctx, P = clip.context_length, prompts.shape[0]
    ids = tokens.tolist()
    eot = ids.index(max(ids))
    label = ids[1:eot][: ctx - 2 - P]  # truncate label, keep EOT
    seq_ids = [ids[0]] + label + [ids[eot]]
    emb = m.token_embedding(torch.tensor(seq_ids))
    x = torch.cat([emb[:1], prompts, emb[1:]], 0)  # SOT, prompts, label, EOT
    pos_eot = x.shape[0] - 1
    x = torch.cat([x, m.token_embedding(torch.zeros(ctx - x.shape[0], dtype=torch.long))], 0)
    x = x + m.positional_embedding
    x = m.ln_final(m.transformer(x[None], attn_mask=m.attn_mask))[0]
    return x[pos_eot] @ m.text_projection


def test_soft_prompts_inserted_after_sot_and_eot_kept(clip: ClipModel):
    torch.manual_seed(1)
    long_label = " ".join(["red"] * 40)  # tokenizer truncates; prompts push EOT past the end
    tokens = clip.tokenize(["a blue square", long_label])
    prompts = torch.randn(5, clip.text_width) * 0.02
    with torch.no_grad():
        out = clip.encode_text(tokens, prompts, normalize=False)  # (P, W) broadcast over B
        out_b = clip.encode_text(tokens, prompts.expand(2, -1, -1), normalize=False)
        for i in range(2):
            ref = _manual_sequence(clip, tokens[i], prompts)
            assert (out[i] - ref).abs().max().item() < 1e-5
    assert torch.equal(out, out_b)
    # prompts change the output (they are really used)
    with torch.no_grad():
        plain = clip.encode_text(tokens, normalize=False)
    assert (plain - out).abs().max().item() > 1e-3


def test_gradients_reach_prompts_not_clip(clip: ClipModel):
    tokens = clip.tokenize(["a star", "a green triangle"])
    prompts = torch.zeros(2, 3, clip.text_width, requires_grad=True)
    clip.encode_text(tokens, prompts).sum().backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in clip.model.parameters())


def test_soft_prompts_bad_shape(clip: ClipModel):
    tokens = clip.tokenize(["x"])
    with pytest.raises(ValueError, match="soft_prompts"):
        clip.encode_text(tokens, torch.zeros(1, 2, clip.text_width + 1))


def test_encode_frames_matches_encode_image(clip: ClipModel):
    torch.manual_seed(2)
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ff = clip.encode_frames(images, return_layers=4)
        ref = clip.model.encode_image(images)
        all_states = clip.encode_frames(images, return_layers=clip.vision_layers + 1)
    assert (ff.embeds - ref).abs().max().item() <= 1e-6
    assert len(ff.layer_tokens) == 4 and ff.layer_tokens[0].shape == (3, 65, 192)
    # last hidden state through ln_post/proj is the embedding; states line up with the full list
    v = clip.visual
    assert torch.allclose(v.ln_post(ff.layer_tokens[-1][:, 0]) @ v.proj, ref, atol=1e-6)
    assert len(all_states.layer_tokens) == 7
    assert torch.equal(all_states.layer_tokens[-4], ff.layer_tokens[0])


def test_lock_keeps_eval_under_parent_train(clip: ClipModel):
    parent = torch.nn.Sequential(clip)
    parent.train()
    assert clip.training and not clip.model.training
    assert not any(p.requires_grad for p in clip.parameters())


def test_local_dir_round_trip(clip: ClipModel, tmp_path):
    out = save_clip_local_dir(clip, "ovc-vit-tiny", tmp_path / "clip")
    assert (out / "open_clip_config.json").is_file() and (out / "open_clip_model.safetensors").is_file()
    loaded = create_clip(ClipConfig(model="ovc-vit-tiny", pretrained=f"local-dir:{out}"))
    sd_a, sd_b = clip.model.state_dict(), loaded.model.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    tokens = clip.tokenize(["a circle"])
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(clip.encode_text(tokens), loaded.encode_text(tokens))
        assert torch.equal(clip.encode_image(images), loaded.encode_image(images))
    assert loaded.image_mean == clip.image_mean and loaded.context_length == 32


def test_checkpoint_file_loads(clip: ClipModel, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, str(path))
    loaded = build_clip("ovc-vit-tiny", str(path))
    assert torch.equal(loaded.model.visual.proj, clip.model.visual.proj)


def test_offline_hub_fails_fast_naming_what_to_provide(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ClipLoadError, match=r"provide pretrained=/path/to/ViT-B-32\.pt.*local-dir:"):
        build_clip("ViT-B-32", "openai")
    with pytest.raises(ClipLoadError, match="not found"):
        build_clip("ovc-vit-tiny", "/nonexistent/weights.pt")
    with pytest.raises(ClipLoadError, match="open_clip_config.json"):
        build_clip("ovc-vit-tiny", "local-dir:/nonexistent/dir")


def test_trimmed_text_path_equals_full_context(clip: ClipModel):
    """trim=True stops at the batch's last EOT; with the causal mask the pooled features are the same."""
    tokens = clip.tokenize(["a red circle moving left", "a dog", "", "star"])
    prompts = torch.randn(4, 3, clip.text_width)
    with torch.no_grad():
        for sp in (None, prompts):
            full = clip.encode_text(tokens, soft_prompts=sp, normalize=False)
            trimmed = clip.encode_text(tokens, soft_prompts=sp, normalize=False, trim=True)
            assert (full - trimmed).abs().max().item() <= 1e-5
