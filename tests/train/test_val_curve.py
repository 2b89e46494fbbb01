"""ovc.train.val_curve: the fixed val subset, what is kept between evaluations, and that scoring
leaves the model and the random state as it found them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovc.config import load_config
from ovc.train.val_curve import ValCurve, ValSubset, val_subset
from tests.helpers import REPO_ROOT, tiny_overrides


def _cfg(root, *extra):
    return load_config(REPO_ROOT / "params.yaml", tiny_overrides(root, *extra))


def test_val_subset_is_fixed_sorted_and_all_when_zero():
    a = val_subset(300, 96)
    assert a == val_subset(300, 96)  # no seed in: every training seed and method scores the same videos
    assert len(a) == 96 and a == sorted(a) and len(set(a)) == 96 and 0 <= a[0] and a[-1] < 300
    assert a != list(range(96))  # drawn over the split, not its first videos
    assert val_subset(12, 0) == val_subset(12, 96) == list(range(12))


def test_evaluation_restores_mode_and_random_state_and_repeats(tiny_project):
    """Scoring runs in eval mode, then the method is back in train mode; torch's and numpy's random
    streams continue as if nothing ran; the same weights score the same; the video embeddings of a
    frozen video side are computed once and shared through the subset."""
    from ovc.models.methods import build_method

    cfg = _cfg(tiny_project, "train.eval_videos=8")
    method = build_method(cfg, "coop").train()
    curve = ValCurve(cfg, method, torch.device("cpu"))  # loads (decodes) its subset at the first evaluation
    modes = {name: m.training for name, m in method.named_modules()}  # a locked CLIP stays in eval mode
    torch.manual_seed(5)
    np.random.seed(5)
    first = curve.evaluate()
    after_torch, after_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(5)
    np.random.seed(5)
    assert torch.equal(after_torch, torch.rand(3)) and np.array_equal(after_np, np.random.rand(3))
    assert method.training and {name: m.training for name, m in method.named_modules()} == modes
    subset = curve.subset
    assert len(subset.split.video_ids) == 8 and subset.targets.shape == (8, len(subset.split.vocab))
    assert 0 <= first["val_aupr_macro"] <= 1 and 0 <= first["val_aupr_micro"] <= 1
    assert "val_setup_seconds" in first
    again = curve.evaluate()
    assert (again["val_aupr_macro"], again["val_aupr_micro"]) == (first["val_aupr_macro"], first["val_aupr_micro"])
    assert "val_setup_seconds" not in again
    assert list(subset.frozen) == ["frozen_clip_mean"] and curve.video_emb is subset.frozen["frozen_clip_mean"]
    other = ValCurve(cfg, build_method(cfg, "dualcoop"), torch.device("cpu"), lambda: subset)
    other.evaluate()  # another frozen-video method of the worker reuses the embeddings
    assert other.video_emb is curve.video_emb
    # a manifest without val: no curve, no failure
    off = ValCurve(cfg, method, torch.device("cpu"), lambda: ValSubset(disabled="no val split"))
    assert off.evaluate() == {"val_aupr_macro": None, "val_aupr_micro": None, "val_seconds": 0.0}


@pytest.mark.parametrize("name", ["ours", "vificlip"])
def test_kept_parts_score_like_the_evaluate_stage(tiny_project, name):
    """`ours` keeps the frozen trunk outputs and runs only its temporal branch, `vificlip` keeps the
    frames: both give the video embeddings the evaluate stage computes from the frames."""
    from ovc.evaluate.scoring import embed_videos
    from ovc.models.methods import build_method, method_clip

    cfg = _cfg(tiny_project, "train.eval_videos=6")
    torch.manual_seed(0)
    method = build_method(cfg, name)
    with torch.no_grad():  # a trained-looking branch: the readout is zero at init, which would hide a wrong path
        for p in method.video_encoder.parameters():
            if p.requires_grad and p.dim() == 2:
                p.add_(0.05 * torch.randn_like(p))
    curve = ValCurve(cfg, method, torch.device("cpu"))
    point = curve.evaluate()
    assert point["val_aupr_macro"] is not None
    assert (curve.trunk is not None) == (name == "ours") and curve.video_emb is None
    clip = method_clip(method)
    method.eval()
    with torch.no_grad():
        kept = curve._video_embeddings()
        ref = embed_videos(method, curve.split.frames, clip.image_mean, clip.image_std, batch_size=4)
    assert torch.allclose(kept, ref, atol=1e-5), (kept - ref).abs().max()
