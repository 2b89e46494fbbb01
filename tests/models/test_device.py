"""Device placement without a GPU: every stage's model runs on PyTorch's ``meta`` device.

A module on ``meta`` refuses tensors of another device ("Tensor on device cpu is not on the
expected device meta"), so running the real step/eval/classify code with the model on ``meta`` and
the loader's CPU tensors as input catches any input, target or reduction left behind on the CPU —
exactly what would hit a CUDA model (NCCL, cuBLAS) on a GPU machine. Meta tensors carry shapes but
no data, so the code paths run in milliseconds and nothing is read back (no ``.item()``).

Removing the ``.to(device)`` of :func:`ovc.data.loader.to_model_input` (frames), of
``VideoFeatures.to`` (cached features) or of the targets in ``ovc.train.loop._loss`` makes
these tests fail (checked by hand when they were written).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ovc.config import ClipConfig, Config, LabelEncoderConfig, LLMConfig
from ovc.models.clip import create_clip
from ovc.models.llm import create_llm, tiny_t5
from ovc.models.methods import METHOD_NAMES, create_method, method_spec

META = torch.device("meta")
ATTRIBUTES = {"dog": ["four legs"], "kitchen": ["a stove"]}
LABELS = ["dog", "kitchen", "rotating square", "cat"]


def _cfg() -> Config:
    cfg = Config()
    cfg.llm = LLMConfig(backend="seq2seq", n_prefixes=2, k_attributes=1, l_tokens=2)
    cfg.label_encoder = LabelEncoderConfig(width=32, layers=1, heads=2, prompt_len=2, prompt_init="")
    cfg.video_encoder = dataclasses.replace(cfg.video_encoder, temporal_layers=2)
    return cfg


@pytest.fixture(autouse=True)
def _hf_mask_shortcut_off_on_meta(monkeypatch):
    """transformers skips an all-ones SDPA padding mask after reading it (``mask.all()``), which a
    meta tensor cannot answer; on meta, keep the mask (the result is the same, only slower)."""
    import transformers.masking_utils as mu

    orig = mu._ignore_bidirectional_mask_sdpa

    def shortcut(padding_mask, *args, **kwargs):
        if padding_mask is not None and padding_mask.device.type == "meta":
            return False
        return orig(padding_mask, *args, **kwargs)

    monkeypatch.setattr(mu, "_ignore_bidirectional_mask_sdpa", shortcut)


def _method_on_meta(name: str):
    torch.manual_seed(0)
    cfg = _cfg()
    clip = create_clip(ClipConfig(model="ovc-vit-tiny", pretrained=""))
    llm = create_llm(cfg.llm, *tiny_t5()) if method_spec(name).builds.startswith("ours") else None
    method = create_method(name, clip, cfg, attributes=ATTRIBUTES, llm=llm)
    return method.to(META), cfg, clip


def _u8_frames(b: int = 2) -> torch.Tensor:
    return torch.randint(0, 255, (b, 3, 3, 64, 64), dtype=torch.uint8)  # (B, F, 3, H, W) as the loader yields them


# every method a run can hold: the untrained starts (``<m>_step0``) are the same models as ``<m>``
@pytest.mark.parametrize("name", [n for n in METHOD_NAMES if not method_spec(n).untrained])
def test_device_train_step_of_every_method_keeps_tensors_on_the_model_device(name):
    from ovc.train.loop import StepModel, model_inputs, step_loss

    method, cfg, clip = _method_on_meta(name)
    method.train()
    targets = torch.zeros(2, len(LABELS))  # CPU, as the collator builds them
    targets[0, 0] = targets[1, 1] = 1.0
    videos = model_inputs(_u8_frames(), META, clip.image_mean, clip.image_std)
    assert videos.device == META
    alpha = (
        method.video_encoder.sample_alpha(torch.Generator().manual_seed(0))
        if hasattr(method.video_encoder, "sample_alpha")
        else None
    )
    loss = step_loss(StepModel(method), videos, LABELS, targets, cfg, META, alpha)
    assert loss.device == META and loss.dtype == torch.float32 and loss.dim() == 0
    params = method.trainable_parameters()
    assert bool(params) == method_spec(name).trainable
    if params:
        loss.backward()
        assert any(p.grad is not None for p in params)
        assert all(p.grad.device == META for p in params if p.grad is not None)


def test_device_train_step_from_cached_features():
    """The feature cache lives on the CPU; a step moves the batch's features to the model's device."""
    from ovc.models.video_encoder import VideoEncoder
    from ovc.train.loop import StepModel, model_inputs, step_loss

    torch.manual_seed(0)
    clip = create_clip(ClipConfig(model="ovc-vit-tiny", pretrained=""))
    feats = VideoEncoder(clip, dataclasses.replace(_cfg().video_encoder, use_temporal=True)).encode_trunk(
        torch.randn(2, 3, 3, 64, 64)
    )
    method, cfg, _ = _method_on_meta("ours")
    method.train()
    videos = model_inputs(feats, META, clip.image_mean, clip.image_std)
    assert videos.embeds.device == videos.tokens.device == META
    step_loss(StepModel(method), videos, LABELS, torch.zeros(2, len(LABELS)), cfg, META, 0.3).backward()


def test_device_evaluate_and_classify_batches_run_on_the_model_device():
    from ovc.infer.published import PublishedModel
    from ovc.stages.evaluate import embed_videos

    method, cfg, clip = _method_on_meta("ours")
    method.eval()
    video_emb = embed_videos(method, _u8_frames(3), clip.image_mean, clip.image_std, batch_size=2, device=META)
    label_emb = method.embed_vocabulary(LABELS, batch_size=2)
    assert video_emb.device == label_emb.device == META
    assert method.score(video_emb, label_emb).shape == (3, len(LABELS))

    model = PublishedModel(method, cfg, None, device="meta")
    emb = model.encode_frames(_u8_frames(2))  # the classify path: loader's uint8 clips -> model device
    assert emb.device == META and emb.shape == (2, clip.embed_dim)


def test_device_meta_catches_an_input_left_on_the_cpu():
    """The premise of this file: a CPU tensor entering a meta model raises."""
    method, _, _ = _method_on_meta("clip_classname")
    with pytest.raises(RuntimeError, match="device"):
        method.encode_videos(torch.randn(1, 3, 3, 64, 64))
