"""ovc.models.video_encoder: init == frozen CLIP, weight regularisation maths, frozen trunk, shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ovc.config import VideoEncoderConfig
from ovc.models.clip import ClipModel, build_clip
from ovc.models.video_encoder import VideoEncoder

B, FRAMES = 2, 3


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    torch.manual_seed(0)
    return build_clip("ovc-vit-tiny")


@pytest.fixture()
def video() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(B, FRAMES, 3, 64, 64)


def clip_mean_of_frames(clip: ClipModel, video: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        e = F.normalize(clip.model.encode_image(video.flatten(0, 1)), dim=-1).view(B, FRAMES, -1)
    return F.normalize(e.mean(1), dim=-1)


def _randomize_branch(enc: VideoEncoder, seed: int = 3) -> None:
    """Make zero-initialised parts non-zero so gradients reach every branch parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        enc.tmp_proj.weight.copy_(torch.randn(enc.tmp_proj.weight.shape, generator=g) * 0.05)
        for blk in enc.blocks:
            blk.temporal.attn.out_proj.weight.copy_(
                torch.randn(blk.temporal.attn.out_proj.weight.shape, generator=g) * 0.05
            )
            blk.proj.weight.add_(torch.randn(blk.proj.weight.shape, generator=g) * 0.05)


@pytest.mark.parametrize("spatial_mlp", [False, True])
def test_init_equals_frozen_clip_mean_of_frames(clip, video, spatial_mlp):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=4, spatial_mlp=spatial_mlp))
    ref = clip_mean_of_frames(clip, video)
    for mode in (enc.eval, enc.train):
        mode()
        with torch.no_grad():
            out = enc(video)
        assert out.shape == (B, clip.embed_dim)
        assert (out - ref).abs().max().item() <= 1e-5
    assert torch.allclose(out.norm(dim=-1), torch.ones(B), atol=1e-5)


def test_no_temporal_is_clip_mean_of_frames(clip, video):
    enc = VideoEncoder(clip, VideoEncoderConfig(use_temporal=False))
    assert enc.trainable_parameters() == []
    with torch.no_grad():
        assert (enc(video) - clip_mean_of_frames(clip, video)).abs().max().item() <= 1e-6


def test_branch_output_depends_on_frame_order_once_trained(clip, video):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2)).eval()
    _randomize_branch(enc)
    with torch.no_grad():
        enc.temporal_pos.normal_(std=0.5)
        a, b = enc(video), enc(video.flip(1))
    assert (a - b).abs().max().item() > 1e-4  # temporal modelling: the mean of frames alone is order-invariant


def test_alpha_zero_uses_frozen_weights(clip, video):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2)).eval()
    _randomize_branch(enc)
    with torch.no_grad():
        base_alpha0 = enc(video, alpha=0.0)
        base_alpha1 = enc(video, alpha=1.0)
        assert torch.allclose(base_alpha0, base_alpha1, atol=1e-6)  # θ_ft == θ_frozen still
        for blk in enc.blocks:  # fine-tune the spatial copies away from CLIP
            for p in blk.spatial.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        assert torch.allclose(enc(video, alpha=0.0), base_alpha0, atol=1e-6)
        assert (enc(video, alpha=1.0) - base_alpha0).abs().max().item() > 1e-4
        half = enc(video, alpha=0.5)
    assert (half - base_alpha0).abs().max().item() > 1e-5


def test_grad_on_finetuned_weights_scales_with_alpha(clip, video):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2)).train()
    _randomize_branch(enc)
    target = torch.randn(B, clip.embed_dim, generator=torch.Generator().manual_seed(5))

    def spatial_grads(alpha: float) -> list[torch.Tensor]:
        enc.zero_grad(set_to_none=True)
        (enc(video, alpha=alpha) * target).sum().backward()
        return [p.grad.clone() for blk in enc.blocks for p in blk.spatial.parameters()]

    # θ_ft == θ_frozen, so the forward is the same for every α and dL/dθ_ft = α·dL/dθ exactly.
    g1, g2, g_full = spatial_grads(0.2), spatial_grads(0.4), spatial_grads(1.0)
    assert any(g.abs().max() > 0 for g in g_full)
    for a, b, c in zip(g1, g2, g_full):
        assert torch.allclose(b, 2 * a, rtol=1e-4, atol=1e-9)
        assert torch.allclose(a, 0.2 * c, rtol=1e-4, atol=1e-9)
    assert all(torch.count_nonzero(g) == 0 for g in spatial_grads(0.0))


def test_frozen_clip_gets_no_grads_and_trainable_is_branch_only(clip, video):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=3)).train()
    _randomize_branch(enc)
    assert not enc.clip.model.training  # locked CLIP stays in eval under .train()
    enc(video).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in enc.clip.parameters())
    trainable = enc.trainable_parameters()
    assert trainable and all(p.requires_grad for p in trainable)
    clip_ids = {id(p) for p in enc.clip.parameters()}
    assert not any(id(p) in clip_ids for p in trainable)
    assert sum(p.numel() for p in trainable) == sum(p.numel() for p in enc.parameters()) - sum(
        p.numel() for p in enc.clip.parameters()
    )
    assert all(p.grad is not None for p in trainable)
    sd = enc.state_dict_trainable()
    assert sd and not any(k.startswith("clip.") for k in sd)


def test_state_dict_trainable_round_trip(clip, video):
    a = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2)).eval()
    _randomize_branch(a)
    b = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2)).eval()
    b.load_state_dict_trainable(a.state_dict_trainable())
    with torch.no_grad():
        assert torch.equal(a(video), b(video))
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict_trainable({})


def test_alpha_sampling_by_mode(clip):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=1, weight_reg_lambda=0.5))
    enc.train()
    draws = [enc.resolve_alpha() for _ in range(200)]
    assert 0.0 <= min(draws) and max(draws) <= 0.5 and len(set(draws)) > 100
    enc.eval()
    assert enc.resolve_alpha() == 0.25  # E[α] = λ/2
    assert enc.resolve_alpha(0.7) == 0.7
    off = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=1, weight_reg_lambda=0.0)).train()
    assert off.resolve_alpha() == 1.0
    fixed = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=1, eval_alpha=1.0)).eval()
    assert fixed.resolve_alpha() == 1.0


def test_eval_uses_expected_alpha(clip, video):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2)).eval()
    _randomize_branch(enc)
    with torch.no_grad():
        for blk in enc.blocks:
            for p in blk.spatial.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        assert torch.equal(enc(video), enc(video, alpha=0.25))


def test_bad_inputs(clip):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=1), max_frames=4)
    with pytest.raises(ValueError, match="B, F, 3, H, W"):
        enc(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="max_frames"):
        enc(torch.randn(1, 5, 3, 64, 64))
    with pytest.raises(ValueError, match="temporal_layers"):
        VideoEncoder(clip, VideoEncoderConfig(temporal_layers=7))


@pytest.mark.parametrize("spatial_mlp", [False, True])
def test_tmp_only_spatial_path_is_exact(clip, spatial_mlp):
    from ovc.models.video_encoder import SpatialLayer

    layer = SpatialLayer(clip.visual.transformer.resblocks[-1], with_mlp=spatial_mlp)
    torch.manual_seed(4)
    frames, tmp = torch.randn(2, 3, 65, clip.vision_width), torch.randn(2, clip.vision_width)
    with torch.no_grad():
        full_frames, full_tmp = layer(frames, tmp)
        same_frames, fast_tmp = layer(frames, tmp, tmp_only=True)
    assert torch.allclose(full_tmp, fast_tmp, atol=1e-5)
    assert same_frames is frames and not torch.allclose(full_frames, frames)


def test_eval_interpolation_cache_tracks_weight_updates(clip, video):
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2)).eval()
    _randomize_branch(enc)
    with torch.no_grad():
        first = enc(video)
        assert torch.equal(enc(video), first)  # cached interpolation, same result
        for p in enc.blocks[0].spatial.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # in-place update bumps the version -> recomputed
        changed = enc(video)
    assert (changed - first).abs().max().item() > 1e-5
    with torch.enable_grad():
        assert torch.allclose(enc(video), changed, atol=1e-6)


def test_lambda_zero_is_no_regularisation_not_frozen_spatial_layers(clip, video):
    """λ = 0 (ours_no_reg, §3.2 / Table 3b "✗ Spatial Reg."): α = 1 in training and at eval, eval_alpha
    ignored — θ_ft trained with the full gradient and used as trained. Not the literal U(0, 0) = 0,
    which would freeze the spatial copies at CLIP's weights (no gradient reaches θ_ft)."""
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=2, weight_reg_lambda=0.0, eval_alpha=0.3)).train()
    _randomize_branch(enc)
    target = torch.randn(B, clip.embed_dim, generator=torch.Generator().manual_seed(5))
    assert enc.sample_alpha(torch.Generator().manual_seed(0)) is None  # the trainer then passes None: by mode

    def spatial_grads(alpha: float | None) -> list[torch.Tensor]:
        enc.zero_grad(set_to_none=True)
        (enc(video, alpha=alpha) * target).sum().backward()
        return [p.grad.clone() for blk in enc.blocks for p in blk.spatial.parameters()]

    by_mode, full = spatial_grads(None), spatial_grads(1.0)
    assert any(g.abs().max() > 0 for g in by_mode)  # the spatial layers train ...
    for a, b in zip(by_mode, full):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # ... with dθ/dθ_ft = 1
    with torch.no_grad():
        for blk in enc.blocks:  # fine-tuned away from CLIP: now α matters
            for p in blk.spatial.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        for mode in (enc.train, enc.eval):
            mode()
            assert enc.resolve_alpha() == 1.0
            assert torch.equal(enc(video), enc(video, alpha=1.0))  # θ_ft as trained, eval_alpha=0.3 ignored
            assert (enc(video) - enc(video, alpha=0.3)).abs().max().item() > 1e-5
