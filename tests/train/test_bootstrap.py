"""ovc.train.bootstrap: captioned frames, the bootstrap_clip stage (quick profile), zero-shot evaluation."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from ovc.config import ClipConfig, load_config
from ovc.data.synthworld import MOTION_WORDS, WORLD
from ovc.models.clip import create_clip
from ovc.pipeline import STAGES
from ovc.stages.bootstrap_clip import bootstrap_clip
from ovc.train.bootstrap import (
    METRICS_FILENAME,
    QUICK_OVERRIDES,
    _lr_lambda,
    _prompts,
    caption_words,
    curve_ends,
    to_model_input,
    train_clip,
    word_contrast_loss,
    zero_shot_accuracy,
)
from ovc.train.bootstrap_data import CHUNK, render_frames, render_pool


def test_stage_registered_after_clean():
    names = list(STAGES)
    assert names.index("bootstrap_clip") == names.index("clean") + 1


def test_frames_deterministic_static_captions_every_entity_word():
    images, captions, attrs = render_pool(CHUNK + 40, seed=3, max_objects=2)
    again, captions2, _ = render_pool(CHUNK + 40, seed=3, max_objects=2)
    assert images.shape == (CHUNK + 40, 64, 64, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and captions == captions2
    other, _, _ = render_frames(8, seed=4)
    assert not np.array_equal(other, images[:8])
    words = set(re.findall(r"[a-z]+", " ".join(captions)))
    assert not words & MOTION_WORDS  # static captions only
    for entity in WORLD.entity_words():  # held-out entities included (DESIGN.md)
        assert set(entity.split()) <= words, entity
    assert not {"crimson", "disc", "seaside"} & words  # synonyms are the LLM's, never CLIP's
    # partial captions exist so literal prompts ("a red object", "a star", "a beach") work
    assert any(re.fullmatch(r"(a picture of )?an? [a-z]+ (object|shape)", c) for c in captions)
    assert all(1 <= len(a["objects"]) <= 2 and a["scene"] in WORLD.scenes for a in attrs)


def test_render_pool_same_for_any_worker_count():
    serial = render_pool(CHUNK + 8, seed=0, workers=1)
    parallel = render_pool(CHUNK + 8, seed=0, workers=2)
    assert np.array_equal(serial[0], parallel[0]) and serial[1] == parallel[1]


def test_lr_schedule_warmup_then_cosine():
    f = _lr_lambda(warmup=10, steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-9)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))
    g = _lr_lambda(warmup=10, steps=150, restart=50)  # shape-word phase, then the captions from full rate
    assert g(9) == pytest.approx(1.0) and g(49) < 0.01
    assert g(50) == pytest.approx(0.1) and g(59) == pytest.approx(1.0) and g(149) < 0.01


def test_curve_ends_and_prompts():
    assert curve_ends([4.0, 3.0, 2.0, 1.0]) == (4.0, 1.0)
    assert curve_ends([float(i) for i in range(100)]) == (9.5, 89.5)  # 20 steps at each end
    assert curve_ends([]) == (None, None)  # no shape-word loss at all
    assert _prompts("colour", ["orange", "red"]) == ["an orange object", "a red object"]
    assert _prompts("shape", ["star"]) == ["a star"] and _prompts("object", ["red star"]) == ["a red star"]


def test_caption_words_whole_words_multi_word_names():
    names = ["star", "snow field", "red", "ring"]
    got = caption_words(["a red star on a snow field", "a starfish", "a ring and a star", "a forest"], names)
    assert got.tolist() == [[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]]


def test_word_contrast_loss_soft_targets_and_rows_without_words():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    words = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    scale = torch.tensor(10.0)
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])  # row 2 names no word: left out
    logp = torch.log_softmax(scale * img @ words.T, dim=1)
    expected = (-logp[0, 0] + -(logp[1, 1] + logp[1, 2]) / 2) / 2
    assert torch.allclose(word_contrast_loss(img, words, targets, scale), expected)
    assert word_contrast_loss(img, words, torch.zeros(3, 4), scale).item() == 0.0


def test_caption_phase_keeps_the_image_trunk_of_the_shape_phase():
    """LiT caption phase: the image trunk ends as the shape-word phase left it; head and text move."""
    common = [
        "bootstrap.n_frames=128",
        "bootstrap.batch_size=16",
        "bootstrap.shape_steps=2",
        "bootstrap.warmup=1",
        "bootstrap.eval_frames=8",
        "bootstrap.threads=1",
        "bootstrap.workers=1",
    ]
    runs = {}
    for steps in (3, 5):
        cfg = load_config(None, [*common, f"bootstrap.steps={steps}"])
        clip, hist = train_clip(cfg.bootstrap, cfg.clip, progress=False)
        runs[steps] = {n: p.detach().clone() for n, p in clip.model.named_parameters()}
        assert len(hist["caption_loss"]) == steps - 2
    trunk = [
        n for n in runs[3] if n.startswith("visual.") and not n.startswith("visual.ln_post") and n != "visual.proj"
    ]
    assert trunk and all(torch.equal(runs[3][n], runs[5][n]) for n in trunk)
    assert not torch.equal(runs[3]["visual.proj"], runs[5]["visual.proj"])
    assert not torch.equal(runs[3]["token_embedding.weight"], runs[5]["token_embedding.weight"])


def test_zero_shot_accuracy_structure():
    torch.manual_seed(0)
    clip = create_clip(ClipConfig(model="ovc-vit-tiny"))
    images, _, attrs = render_frames(24, seed=1, max_objects=2)
    zs = zero_shot_accuracy(clip, images, attrs)
    assert set(zs) == {"colour", "shape", "scene", "object"}
    assert zs["scene"]["n"] == 24
    n_single = sum(len(a["objects"]) == 1 for a in attrs)
    assert zs["colour"]["n"] == zs["shape"]["n"] == n_single
    assert zs["colour"]["chance"] == pytest.approx(1 / len(WORLD.colours), abs=1e-4)
    assert zs["object"]["chance"] == pytest.approx(1 / (len(WORLD.colours) * len(WORLD.shapes)), abs=1e-4)
    assert set(zs["shape"]["per_class"]) == set(WORLD.shapes)
    assert 0.0 <= zs["scene"]["top1"] <= 1.0


def test_rejects_inconsistent_config():
    cfg = load_config(None, ["bootstrap.n_frames=16", "bootstrap.batch_size=32"])
    with pytest.raises(ValueError, match="n_frames"):
        train_clip(cfg.bootstrap, cfg.clip, progress=False)
    cfg = load_config(None, ["bootstrap.steps=10", "bootstrap.shape_steps=10"])
    with pytest.raises(ValueError, match="shape_steps"):
        train_clip(cfg.bootstrap, cfg.clip, progress=False)


@pytest.mark.slow
def test_bootstrap_stage_quick_profile(tmp_path):
    """Full stage at the quick profile: local-dir round trip, loss goes down, metrics, determinism."""
    cfg = load_config(None, [f"paths.data={tmp_path}", *QUICK_OVERRIDES])
    summary = bootstrap_clip(cfg)
    out = tmp_path / "models" / "bootstrap_clip"
    assert summary["out_dir"] == str(out)
    assert summary["loss_last"] < summary["loss_first"]  # caption loss, after the shape-word steps
    assert math.isfinite(summary["shape_loss_first"]) and math.isfinite(summary["shape_loss_last"])

    metrics = json.loads((out / METRICS_FILENAME).read_text())
    for task in ("colour", "shape", "scene", "object"):
        assert {"top1", "chance", "n", "per_class"} <= set(metrics["zero_shot"][task])
    assert metrics["params"]["steps"] == cfg.bootstrap.steps
    assert metrics["params"]["shape_steps"] == cfg.bootstrap.shape_steps > 0
    assert math.isfinite(metrics["loss_last"]) and metrics["wall_s"] > 0

    loaded = create_clip(ClipConfig(model=cfg.clip.model, pretrained=f"local-dir:{out}"))
    images, _, _ = render_frames(4, seed=9)
    prompts = ["a red star on a beach", "a city", "a blue object"]
    with torch.no_grad():
        img = loaded.encode_image(to_model_input(images, loaded), normalize=True)
        txt = loaded.encode_text(loaded.tokenize(prompts))
    # same seed -> same weights: a second in-memory run embeds exactly as the saved model
    clip, hist = train_clip(cfg.bootstrap, cfg.clip, progress=False)
    b = cfg.bootstrap  # shape-word steps first, then captions (+ the word contrast of every kind)
    assert len(hist["shape_loss"]) == b.steps and len(hist["caption_loss"]) == b.steps - b.shape_steps
    assert hist["loss"][: b.shape_steps] == hist["shape_loss"][: b.shape_steps]
    with torch.no_grad():
        assert torch.equal(clip.encode_image(to_model_input(images, clip), normalize=True), img)
        assert torch.equal(clip.encode_text(clip.tokenize(prompts)), txt)
    assert not any(p.name.startswith(".bootstrap_clip") for p in out.parent.iterdir())  # no temp dirs left
