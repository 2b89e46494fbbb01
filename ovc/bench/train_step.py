"""Benchmark ``train_step``: one ``ours`` training step, the optimised path vs the straightforward one.

    ovc bench train_step            # 16 videos / 64 labels, 1 torch thread, 5 timed steps per path
    ovc bench train_step --quick    # 4 videos / 16 labels, 1 timed step per path (smoke test)

A step is what :mod:`ovc.train.loop` runs per batch: scores of the batch's videos (cached trunk
features, as the ``features`` stage stores them) against its labels (LLM prefixes -> prompt
transformer -> CLIP text; temporal branch with one weight-regularisation α), the eq.-2 loss,
backward, gradient clipping and an AdamW update. Both paths start from the same weights and inputs:

* ``reference``: fp32, ``nn.MultiheadAttention``'s own forward in the temporal branch
  (:func:`ovc.models.attention.reference_attention`), PyTorch's default attention kernels — the code
  as it was before this benchmark.
* ``optimised``: the lean attention of :mod:`ovc.models.attention` (no layout copies/zero fills in
  the backward) and :func:`ovc.models.device.train_autocast` with ``cpu_amp`` (bf16 autocast + math
  attention on CPUs with native bf16; fp32 elsewhere — ``cpu_bf16`` in the JSON says which ran).

Timing: the paths alternate step by step (shared-core noise hits both alike); per path the median of
the timed steps, wall and CPU (process) seconds. ``speedup`` is the ratio of median CPU seconds
(robust to other processes on the shared cores); ``speedup_wall`` the wall-clock one;
``speedup_exact_fp32`` is the lean attention alone in fp32 (a third path, what CPUs without native
bf16 get). The first
step's loss and gradients of the two paths are compared (``loss_rel_diff``, ``grad_rel_diff``,
``grad_cosine``). CLIP has random weights (the timing does not depend on them); the LLM is the
configured one (packaged MiniLM by default).
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import time
from typing import Any, cast


def build_step_inputs(n_videos: int, n_labels: int, seed: int = 0):
    """(method, features, labels, targets, cfg) of an ``ours`` step: random-weight ``ovc-vit-mini`` CLIP,
    the configured LLM, random trunk features (B, F=8, T, 1+N, W) and ~2 positives per video.

    The zero-initialised readouts (prompt transformer output, temporal attention output, TMP
    projection) get small random weights, so every trainable tensor receives a non-trivial gradient.
    """
    import torch

    from ovc.bench.label_encoder import benchmark_labels
    from ovc.config import ClipConfig, Config
    from ovc.models.clip import create_clip
    from ovc.models.label_encoder import LabelEncoder
    from ovc.models.methods import create_method
    from ovc.models.video_encoder import VideoEncoder, VideoFeatures

    cfg = Config()
    torch.manual_seed(seed)
    clip = create_clip(ClipConfig(model=cfg.clip.model, pretrained=""))
    method = create_method("ours", clip, cfg).train()
    label_enc, video_enc = (
        cast(LabelEncoder, method.label_encoder),
        cast(VideoEncoder, method.video_encoder),
    )  # ours' parts
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        label_enc.prompt_transformer.proj_out.weight.normal_(0, 0.01, generator=g)
        video_enc.tmp_proj.weight.normal_(0, 0.05, generator=g)
        blocks: list[Any] = list(video_enc.blocks)  # TemporalBlocks (nn.ModuleList items are untyped)
        for block in blocks:
            block.temporal.attn.out_proj.weight.normal_(0, 0.02, generator=g)
            block.proj.weight.add_(torch.randn(block.proj.weight.shape, generator=g) * 0.01)
    frames, T = cfg.reader.num_frames, len(video_enc.blocks)
    S, W = clip.visual.positional_embedding.shape[0], clip.vision_width
    embeds = torch.nn.functional.normalize(torch.randn(n_videos, frames, clip.embed_dim, generator=g), dim=-1)
    feats = VideoFeatures(embeds, torch.randn(n_videos, frames, T, S, W, generator=g))  # (B, F, T, 1+N, W)
    labels = benchmark_labels(n_labels)
    targets = torch.zeros(n_videos, n_labels)
    for i in range(n_videos):  # two positives per video
        targets[i, (2 * i) % n_labels] = targets[i, (2 * i + 1) % n_labels] = 1.0
    return method, feats, labels, targets, cfg


def run_step(
    method, optimizer, feats, labels, targets, cfg, optimised: bool, alpha: float = 0.25, cpu_amp: bool = True
):
    """One training step; returns (loss, flat gradient before the update) for the comparison.

    Args:
        optimised: lean attention + :func:`~ovc.models.device.train_autocast` (else the reference path).
        cpu_amp: with ``optimised``, allow CPU bf16 (False: the exact fp32 part of the optimisation alone).
    """
    import torch

    from ovc.models.attention import reference_attention
    from ovc.models.device import train_autocast
    from ovc.train.loop import _loss, batch_scores

    params = [p for p in method.parameters() if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    device = torch.device("cpu")
    region = train_autocast(device, cfg.compute.amp, cpu_amp=cpu_amp) if optimised else contextlib.nullcontext()
    attention = contextlib.nullcontext() if optimised else reference_attention()
    with attention:
        with region:
            scores = batch_scores(method, feats, labels, alpha)  # (B, L)
        loss = _loss(scores, targets, cfg)
        loss.backward()
    grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
    optimizer.step()
    return float(loss.detach()), grad


def bench_train_step(
    quick: bool = False, n_videos: int = 16, n_labels: int = 64, steps: int = 5, threads: int = 1
) -> dict[str, Any]:
    """Seconds per ``ours`` step, optimised vs reference, side by side (see the module docstring).

    Args:
        quick: 4 videos / 16 labels, 1 timed step per path.
        n_videos, n_labels, steps, threads: sizes of the full run.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from ovc.models.device import cpu_bf16_supported

    if quick:
        n_videos, n_labels, steps = 4, 16, 1
    torch.set_num_threads(threads)
    method, feats, labels, targets, cfg = build_step_inputs(n_videos, n_labels)
    # "exact": the lean attention alone in fp32 (what CPUs without native bf16 get)
    paths = {"reference": copy.deepcopy(method), "exact": copy.deepcopy(method), "optimised": method}
    optims = {
        k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=cfg.train.lr) for k, m in paths.items()
    }
    first: dict[str, tuple[float, torch.Tensor]] = {}
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    for i in range(steps + 1):  # step 0: warm-up (allocator, oneDNN kernels), its results are compared
        for name, m in paths.items():
            w0, c0 = time.perf_counter(), time.process_time()
            out = run_step(
                m, optims[name], feats, labels, targets, cfg, optimised=name != "reference", cpu_amp=name == "optimised"
            )
            if i == 0:
                first[name] = out
            else:
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    (loss_r, grad_r), (loss_o, grad_o) = first["reference"], first["optimised"]
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in paths}
    return {
        "videos": n_videos,
        "labels": n_labels,
        "timed_steps_per_path": steps,
        "torch_threads": torch.get_num_threads(),
        "clip": f"{cfg.clip.model} (random weights)",
        "llm": f"{cfg.llm.backend}:{cfg.llm.name} N={cfg.llm.n_prefixes} K={cfg.llm.k_attributes} L={cfg.llm.l_tokens}",
        "inputs": f"cached trunk features (the feature-cache path); temporal branch T={len(cast(Any, method.video_encoder).blocks)}",
        "cpu_bf16": cpu_bf16_supported(),
        "seconds_per_step_reference": round(med["reference"][0], 3),
        "seconds_per_step_optimised": round(med["optimised"][0], 3),
        "cpu_seconds_per_step_reference": round(med["reference"][1], 3),
        "cpu_seconds_per_step_optimised": round(med["optimised"][1], 3),
        "speedup": round(med["reference"][1] / med["optimised"][1], 2),
        "speedup_wall": round(med["reference"][0] / med["optimised"][0], 2),
        "cpu_seconds_per_step_exact_fp32": round(med["exact"][1], 3),
        "speedup_exact_fp32": round(med["reference"][1] / med["exact"][1], 2),
        "grad_rel_diff_exact_fp32": float((first["exact"][1] - grad_r).norm() / grad_r.norm().clamp_min(1e-12)),
        "goal_speedup": 2,
        "loss_reference": round(loss_r, 5),
        "loss_optimised": round(loss_o, 5),
        "loss_rel_diff": abs(loss_o - loss_r) / max(abs(loss_r), 1e-12),
        "grad_rel_diff": float((grad_o - grad_r).norm() / grad_r.norm().clamp_min(1e-12)),
        "grad_cosine": float(torch.nn.functional.cosine_similarity(grad_o.double(), grad_r.double(), dim=0)),
    }
