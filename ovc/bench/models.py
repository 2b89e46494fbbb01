"""Model benchmarks: video-encoder overhead over CLIP, and the cost of stochastic weight regularisation.

Both use open_clip ViT-B-32 with random weights (``pretrained=None``; same FLOPs as the real one),
8 frames at 224², ``torch.set_num_threads(2)``; the two sides run interleaved and the medians are
compared, so a busy machine slows both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import open_clip
import torch

from ovc.config import VideoEncoderConfig
from ovc.models.clip import ClipModel
from ovc.models.video_encoder import VideoEncoder

N_FRAMES, IMAGE_SIZE = 8, 224


def _vit_b32() -> ClipModel:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    return ClipModel(model, open_clip.get_tokenizer("ViT-B-32"), model_name="ViT-B-32").lock()


def _interleaved_ms(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Run each fn round-robin ``repeats`` times after ``warmup`` rounds.

    Returns per fn: ``wall_min``/``wall_median`` ms and ``cpu_min`` ms (process CPU time, all
    threads; less sensitive than wall time to other processes on a shared machine).
    """
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            if i >= warmup:
                wall[name].append((time.perf_counter() - t0) * 1e3)
                cpu[name].append((time.process_time() - c0) * 1e3)
    return {
        k: {"wall_min": min(wall[k]), "wall_median": statistics.median(wall[k]), "cpu_min": min(cpu[k])} for k in fns
    }


def bench_video_encoder(quick: bool = False) -> dict[str, Any]:
    """Video embedding with the T=4 temporal branch vs bare open_clip ``encode_image`` of the same frames.

    Goal: ``ratio_vs_clip`` <= 1.4 (eval, no grad, one 8-frame video).
    """
    torch.set_num_threads(2)
    clip = _vit_b32()
    video = torch.randn(1, N_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    frames = video.flatten(0, 1)  # (1, F, 3, H, W) -> (F, 3, H, W)
    enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=4)).eval()
    enc_mlp = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=4, spatial_mlp=True)).eval()
    repeats = 3 if quick else 10
    with torch.no_grad():
        ms = _interleaved_ms(
            {
                "clip": lambda: clip.model.encode_image(frames),
                "video": lambda: enc(video),
                "video_spatial_mlp": lambda: enc_mlp(video),
            },
            repeats,
        )
    clip_ms, video_ms, mlp_ms = ms["clip"], ms["video"], ms["video_spatial_mlp"]
    return {
        "ratio_vs_clip": round(video_ms["wall_min"] / clip_ms["wall_min"], 3),
        "goal_ratio_vs_clip": 1.4,
        "ratio_vs_clip_median": round(video_ms["wall_median"] / clip_ms["wall_median"], 3),
        "ratio_vs_clip_cpu_time": round(video_ms["cpu_min"] / clip_ms["cpu_min"], 3),
        "clip_encode_image_ms": round(clip_ms["wall_min"], 1),
        "video_encoder_ms": round(video_ms["wall_min"], 1),
        "video_encoder_spatial_mlp_ms": round(mlp_ms["wall_min"], 1),
        "ratio_spatial_mlp_vs_clip": round(mlp_ms["wall_min"] / clip_ms["wall_min"], 3),
        "branch_trainable_params": sum(p.numel() for p in enc.trainable_parameters()),
        "setup": f"ViT-B-32 random weights, 1 video x {N_FRAMES} frames {IMAGE_SIZE}^2, T=4, eval, no grad, "
        f"{repeats} interleaved repeats (ms = min wall), torch threads {torch.get_num_threads()}",
    }


def bench_weight_reg(quick: bool = False) -> dict[str, Any]:
    """Training step (forward + backward + AdamW step on the branch) with vs without weight regularisation.

    Goal: ``ratio_vs_plain_step`` <= 1.15. "Without" = λ=0 (θ_ft used directly, no interpolation).
    """
    torch.set_num_threads(2)
    clip = _vit_b32()
    batch = 1
    video = torch.randn(batch, N_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    target = torch.nn.functional.normalize(torch.randn(batch, clip.embed_dim), dim=-1)

    def make_step(lam: float) -> Callable[[], float]:
        torch.manual_seed(1)
        enc = VideoEncoder(clip, VideoEncoderConfig(temporal_layers=4, weight_reg_lambda=lam)).train()
        opt = torch.optim.AdamW(enc.trainable_parameters(), lr=1e-5)

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = 1 - (enc(video) * target).sum(-1).mean()
            loss.backward()
            opt.step()
            return float(loss.detach())

        return step

    repeats = 2 if quick else 6
    ms = _interleaved_ms({"weight_reg": make_step(0.5), "plain": make_step(0.0)}, repeats)
    reg, plain = ms["weight_reg"], ms["plain"]
    return {
        "ratio_vs_plain_step": round(reg["wall_min"] / plain["wall_min"], 3),
        "goal_ratio_vs_plain_step": 1.15,
        "ratio_vs_plain_step_median": round(reg["wall_median"] / plain["wall_median"], 3),
        "ratio_vs_plain_step_cpu_time": round(reg["cpu_min"] / plain["cpu_min"], 3),
        "weight_reg_step_ms": round(reg["wall_min"], 1),
        "plain_step_ms": round(plain["wall_min"], 1),
        "setup": f"ViT-B-32 random weights, batch {batch} videos x {N_FRAMES} frames {IMAGE_SIZE}^2, T=4, "
        f"AdamW on the branch, {repeats} interleaved repeats (ms = min wall), torch threads {torch.get_num_threads()}",
    }
