"""Every method behind the one Method protocol (paper §4.2): shapes, norms, trainable sets, prompts."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
import torch.nn.functional as F

from ovc.config import ClipConfig, Config, LabelEncoderConfig, LLMConfig
from ovc.models.baselines import VIDEO_TEMPLATES, FrameMeanVideoEncoder
from ovc.models.clip import create_clip
from ovc.models.llm import create_llm, tiny_t5
from ovc.models.methods import METHOD_NAMES, METHODS, MissingAttributesError, create_method
from ovc.models.video_encoder import VideoEncoder

LABELS = ["dog", "rotating square", "kitchen"]
ATTRIBUTES = {"dog": ["four legs", "a wagging tail"], "kitchen": ["a stove"]}


def _cfg() -> Config:
    cfg = Config()
    cfg.llm = LLMConfig(backend="seq2seq", n_prefixes=2, k_attributes=1, l_tokens=2)
    cfg.label_encoder = LabelEncoderConfig(width=32, layers=1, heads=2, prompt_len=2, prompt_init="")
    cfg.video_encoder = dataclasses.replace(cfg.video_encoder, temporal_layers=2)
    return cfg


def _method(name: str):
    torch.manual_seed(0)
    clip = create_clip(ClipConfig(model="ovc-vit-tiny", pretrained=""))
    cfg = _cfg()
    llm = None
    if name.startswith("ours"):
        model, tokenizer = tiny_t5()
        llm = create_llm(cfg.llm, model, tokenizer)
    return create_method(name, clip, cfg, attributes=ATTRIBUTES, llm=llm), clip


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (B, F, 3, H, W)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_shapes_norms_and_trainable_sets(name, frames):
    method, clip = _method(name)
    labels, videos = method.encode_labels(LABELS), method.encode_videos(frames)
    assert labels.shape == (3, clip.embed_dim) and videos.shape == (2, clip.embed_dim)
    torch.testing.assert_close(videos.norm(dim=-1), torch.ones(2))
    if method.unit_norm_labels:
        torch.testing.assert_close(labels.norm(dim=-1), torch.ones(3))
    scores = method(frames, LABELS)
    torch.testing.assert_close(scores, videos @ labels.t())

    trainable = {n for n, p in method.named_parameters() if p.requires_grad}
    clip_names = {f"clip.{n}" for n, _ in clip.named_parameters()}
    name = METHODS[name].builds  # an untrained start (<m>_step0) is m, built and never trained
    if name in ("clip_classname", "clip_templates", "clip_fixed_attributes"):
        assert trainable == set()
    elif name == "coop":
        assert trainable == {"label_encoder.ctx"}
    elif name == "dualcoop":
        assert trainable == {"label_encoder.positive.ctx", "label_encoder.negative.ctx"}
    elif name == "vificlip":
        assert trainable == {f"label_encoder.{n}" for n in clip_names} - {"label_encoder.clip.model.logit_scale"}
    else:  # ours*: prefixes + prompt transformer (+ temporal branch for ours); never CLIP or the LLM
        assert "label_encoder.llm.prefixes" in trainable
        assert any(n.startswith("label_encoder.prompt_transformer.") for n in trainable)
        assert not any(".clip." in f".{n}" or "llm.llm." in n for n in trainable)
        # ours_no_reg (λ = 0) keeps the branch: "no regularisation", not "no temporal branch"
        assert any(n.startswith("video_encoder.") for n in trainable) == (name in ("ours", "ours_synth", "ours_no_reg"))
    assert len(method.trainable_parameters()) == len(trainable)

    if trainable:  # gradients reach exactly the trainable set
        method.zero_grad(set_to_none=True)
        method(frames, LABELS).sum().backward()
        reached = {n for n, p in method.named_parameters() if p.grad is not None}
        assert reached and reached <= trainable
        if name.startswith("ours"):
            assert "label_encoder.llm.prefixes" in reached
        if name == "vificlip":
            assert (
                any(".visual." in n for n in reached) and "label_encoder.clip.model.token_embedding.weight" in reached
            )


def test_clip_classname_is_plain_open_clip(frames):
    method, clip = _method("clip_classname")
    got = method.encode_labels(["dog"])
    with torch.no_grad():
        ref = F.normalize(clip.model.encode_text(clip.tokenize(["a video of dog."])), dim=-1)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    # frozen baselines' video side: the frozen CLIP mean of frames
    ref_video = F.normalize(
        F.normalize(clip.model.encode_image(frames.flatten(0, 1)), dim=-1).view(2, 3, -1).mean(1), dim=-1
    )
    torch.testing.assert_close(method.encode_videos(frames), ref_video, atol=1e-6, rtol=0)


def test_clip_templates_is_the_mean_of_template_embeddings():
    method, clip = _method("clip_templates")
    with torch.no_grad():
        each = F.normalize(
            clip.model.encode_text(clip.tokenize([t.format(label="dog") for t in VIDEO_TEMPLATES])), dim=-1
        )
    torch.testing.assert_close(method.encode_labels(["dog"])[0], F.normalize(each.mean(0), dim=0), atol=1e-6, rtol=0)


def test_clip_fixed_attributes_prompts_and_fallback(caplog):
    method, clip = _method("clip_fixed_attributes")
    prompts = ["a video of dog.", "dog, which has four legs", "dog, which has a wagging tail"]
    with torch.no_grad():
        each = F.normalize(clip.model.encode_text(clip.tokenize(prompts)), dim=-1)
        classname = F.normalize(clip.model.encode_text(clip.tokenize(["a video of cat.", "a video of owl."])), dim=-1)
    with caplog.at_level(logging.WARNING, logger="ovc.models.baselines"):
        got = method.encode_labels(["dog", "cat", "owl"])
    torch.testing.assert_close(got[0], F.normalize(each.mean(0), dim=0), atol=1e-6, rtol=0)
    torch.testing.assert_close(got[1:], classname, atol=1e-6, rtol=0)  # no attributes: class-name prompt
    assert method.label_encoder.missing == {"cat", "owl"}
    assert sum("no attributes" in r.message for r in caplog.records) == 1
    with pytest.raises(MissingAttributesError):
        create_method("clip_fixed_attributes", clip, Config(), attributes=None)
    with pytest.raises(MissingAttributesError, match="empty"):  # `{}` is no attributes, not a silent class-name copy
        create_method("clip_fixed_attributes", clip, Config(), attributes={})


def test_registry_lists_derive_from_one_table():
    from ovc.evaluate.report import METHOD_DISPLAY_NAMES
    from ovc.models.methods import CACHEABLE_METHODS, TRAINABLE_METHODS

    assert list(METHOD_DISPLAY_NAMES) == list(METHODS)
    assert set(TRAINABLE_METHODS) == {
        "ours",
        "ours_no_temporal",
        "coop",
        "dualcoop",
        "vificlip",
        "ours_synth",
        "ours_no_reg",
    }
    assert "vificlip" not in CACHEABLE_METHODS and {"ours_synth", "ours_no_reg"} <= set(CACHEABLE_METHODS)
    untrained = [n for n, s in METHODS.items() if s.untrained]
    # no ours_no_reg_step0: untrained, ours_no_reg is ours_step0 exactly (θ_ft = θ_frozen, W_out = 0)
    assert untrained == ["coop_step0", "dualcoop_step0", "vificlip_step0", "ours_no_temporal_step0", "ours_step0"]
    assert list(METHODS).index("ours_step0") == list(METHODS).index("ours") - 1
    assert METHOD_DISPLAY_NAMES["ours_step0"] == "Ours: + Temporal Modeling (step 0)"
    assert not any(m.endswith("_step0") for m in TRAINABLE_METHODS)
    method, _ = _method("ours_synth")  # builds ours, keeps its own key
    assert method.name == "ours_synth" and len(method.video_encoder.blocks) == 2


def test_coop_context_starts_from_the_init_words():
    method, clip = _method("coop")
    tokens = clip.tokenize(["a video of a"])
    torch.testing.assert_close(method.label_encoder.ctx.detach(), clip.token_embeddings(tokens)[0, 1:5])


def test_dualcoop_embedding_is_positive_minus_negative(frames):
    method, _ = _method("dualcoop")
    pos, neg = method.label_encoder.positive(LABELS), method.label_encoder.negative(LABELS)
    torch.testing.assert_close(pos.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(method.encode_labels(LABELS), pos - neg)
    v = method.encode_videos(frames)
    torch.testing.assert_close(method(frames, LABELS), v @ pos.t() - v @ neg.t())  # s = s_pos - s_neg


def test_vificlip_video_side_equals_frozen_mean_of_frames_at_init(frames):
    torch.manual_seed(0)
    clip = create_clip(ClipConfig(model="ovc-vit-tiny", pretrained=""))
    frozen = VideoEncoder(clip, dataclasses.replace(Config().video_encoder, use_temporal=False))(frames)
    torch.testing.assert_close(FrameMeanVideoEncoder(clip)(frames), frozen, atol=1e-6, rtol=0)


def test_trainable_state_roundtrip_and_vocabulary_embedding():
    method, _ = _method("coop")
    state = method.state_dict_trainable()
    assert list(state) == ["label_encoder.ctx"]
    other, _ = _method("coop")
    with torch.no_grad():
        other.label_encoder.ctx.add_(1.0)
    other.load_state_dict_trainable(state)
    torch.testing.assert_close(other.label_encoder.ctx, method.label_encoder.ctx)
    table = method.embed_vocabulary(LABELS, batch_size=2)
    torch.testing.assert_close(table, method.encode_labels(LABELS).detach(), atol=1e-6, rtol=0)
    with pytest.raises(KeyError, match="mismatch"):
        other.load_state_dict_trainable({})
    with pytest.raises(ValueError, match="unknown method"):
        create_method("clip++", _method("coop")[1])


def test_ours_no_reg_is_ours_at_lambda_zero_with_its_branch_on(frames):
    """ours_no_reg (§3.2 ablation): ours' architecture and initial weights, λ = 0 and no eval_alpha,
    whatever the config says for ours; untrained it embeds videos exactly as ours does."""
    from ovc.models.methods import method_spec

    cfg = _cfg()
    cfg.video_encoder = dataclasses.replace(cfg.video_encoder, weight_reg_lambda=0.5, eval_alpha=0.3)
    built = {}
    for name in ("ours", "ours_no_reg"):
        torch.manual_seed(0)
        clip = create_clip(ClipConfig(model="ovc-vit-tiny", pretrained=""))
        built[name] = create_method(name, clip, cfg, llm=create_llm(cfg.llm, *tiny_t5())).eval()
    ours, noreg = built["ours"].video_encoder, built["ours_no_reg"].video_encoder
    assert isinstance(noreg, VideoEncoder) and noreg.cfg.use_temporal and len(noreg.blocks) == 2
    assert (noreg.cfg.weight_reg_lambda, noreg.cfg.eval_alpha) == (0.0, None)
    assert (ours.cfg.weight_reg_lambda, ours.cfg.eval_alpha) == (0.5, 0.3)  # the config itself is untouched
    assert noreg.resolve_alpha() == 1.0 and ours.resolve_alpha() == 0.3
    assert ours.state_dict_trainable().keys() == noreg.state_dict_trainable().keys()
    with torch.no_grad():
        torch.testing.assert_close(noreg(frames), ours(frames))  # same start: why there is no ours_no_reg_step0
    spec = method_spec("ours_no_reg")
    assert spec.trainable and spec.frozen_trunk and spec.variant_of == "ours" and "λ = 0" in spec.display
