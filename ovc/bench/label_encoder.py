"""Benchmark ``label_encoder``: embedding a vocabulary in batches vs one label at a time.

    ovc bench label_encoder            # 1,000 labels, ViT-B-32 text tower (random weights), packaged MiniLM
    ovc bench label_encoder --quick    # 12 labels, the tiny ovc CLIP

Setting: 2 torch threads, CPU, ``LabelEncoder.encode_labels`` (N=4 prefixes, K=2, L=4 from the default
config). The batched pass embeds every label; the per-label loop is timed on a subset and
extrapolated to all labels (it is the same computation, one label per forward) — the JSON says so.
Goal (the brief): ``speedup_vs_loop`` ≥ 10. Wall and CPU (process) seconds are both reported; CPU
seconds are less sensitive to other load on shared cores.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

_ADJECTIVES = [
    "red",
    "small",
    "wooden",
    "electric",
    "vintage",
    "wild",
    "frozen",
    "giant",
    "tiny",
    "golden",
    "striped",
    "rusty",
    "glass",
    "paper",
    "plastic",
    "silver",
    "wet",
    "old",
    "flying",
    "racing",
]
_NOUNS = [
    "dog",
    "guitar",
    "bicycle",
    "mountain",
    "kitchen",
    "boat",
    "train",
    "piano",
    "horse",
    "castle",
    "tractor",
    "garden",
    "snowboard",
    "aquarium",
    "violin",
    "motorcycle",
    "bridge",
    "waterfall",
    "skateboard",
    "helicopter",
    "lighthouse",
    "bakery",
    "forest",
    "stadium",
    "camera",
]
_ACTIONS = ["", "playing", "riding", "cleaning", "painting", "repairing"]


def benchmark_labels(n: int) -> list[str]:
    """n distinct, deterministic label names of 1-3 words (YouTube-8M / Kinetics-like lengths)."""
    out: list[str] = []
    for noun, adj, act in itertools.product(_NOUNS, _ADJECTIVES, _ACTIONS):
        out.append(" ".join(w for w in (act, adj, noun) if w))
        if len(out) == n:
            return out
    raise ValueError(f"benchmark_labels: at most {len(out)} labels")


def _timed(fn) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def bench_label_encoder(
    quick: bool = False, n_labels: int = 1000, n_loop: int = 50, batch_size: int = 64
) -> dict[str, Any]:
    """Embed 1,000 labels batched (batch 64) vs a per-label loop (50 labels timed, extrapolated).

    Args:
        quick: 12 labels with the tiny ovc CLIP (smoke test).
        n_labels, n_loop, batch_size: sizes of the full run (the CLI uses the defaults).

    Returns:
        labels, batch_size, seconds (batched, wall/CPU), loop seconds measured on the subset and
        extrapolated to all labels, ``speedup_vs_loop`` (wall) and ``speedup_vs_loop_cpu``, labels/s,
        and ``max_abs_diff_batched_vs_loop`` on the subset (a correctness check).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from ovc.config import ClipConfig, Config
    from ovc.models.clip import create_clip
    from ovc.models.label_encoder import create_label_encoder

    torch.set_num_threads(2)
    torch.manual_seed(0)
    if quick:
        n_labels, n_loop, batch_size = 12, 3, 6
    clip_name = "ovc-vit-tiny" if quick else "ViT-B-32"
    cfg = Config()
    clip = create_clip(ClipConfig(model=clip_name, pretrained=""))  # random weights: timing only
    encoder = create_label_encoder(cfg, clip).eval()
    labels = benchmark_labels(n_labels)

    encoder.encode_labels(labels[:2], batch_size=2)  # warm-up (allocator, MKL/oneDNN kernels)
    batched, wall_b, cpu_b = _timed(lambda: encoder.encode_labels(labels, batch_size=batch_size))
    loop, wall_l, cpu_l = _timed(lambda: torch.cat([encoder.encode_labels([label]) for label in labels[:n_loop]]))
    scale = n_labels / n_loop
    return {
        "labels": n_labels,
        "batch_size": batch_size,
        "clip": f"{clip_name} (random weights, text tower only)",
        "llm": f"{cfg.llm.backend}:{cfg.llm.name}",
        "n_prefixes": cfg.llm.n_prefixes,
        "k_attributes": cfg.llm.k_attributes,
        "l_tokens": cfg.llm.l_tokens,
        "clip_text_sequences_per_label": cfg.llm.n_prefixes * cfg.llm.k_attributes,
        "clip_context_length": clip.context_length,
        "torch_threads": torch.get_num_threads(),
        "seconds_batched": round(wall_b, 2),
        "cpu_seconds_batched": round(cpu_b, 2),
        "loop_labels_timed": n_loop,
        "loop_seconds_measured": round(wall_l, 2),
        "loop_seconds_extrapolated": round(wall_l * scale, 2),
        "cpu_loop_seconds_extrapolated": round(cpu_l * scale, 2),
        "note": f"per-label loop timed on the first {n_loop} labels and extrapolated x{scale:g} to {n_labels}",
        "labels_per_s_batched": round(n_labels / wall_b, 2),
        "labels_per_s_loop": round(n_loop / wall_l, 2),
        "speedup_vs_loop": round(wall_l * scale / wall_b, 2),
        "speedup_vs_loop_cpu": round(cpu_l * scale / cpu_b, 2),
        "goal_speedup": 10,
        "max_abs_diff_batched_vs_loop": float((batched[:n_loop] - loop).abs().max()),
    }
