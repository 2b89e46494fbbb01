"""Benchmarks: ``ovc bench NAME`` prints one JSON object (figures, asked-for ratios, machine) and exits 0.

Each benchmark is a function ``fn(quick: bool) -> dict`` registered here by dotted path. Benchmarks
compare side by side in one run and never gate CI.
"""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Callable
from typing import Any

# bench name -> ("module:function", one-line description)
BENCHES: dict[str, tuple[str, str]] = {
    "video_encoder": (
        "ovc.bench.models:bench_video_encoder",
        "ViT-B-32 8x224² video embedding (T=4 branch) vs open_clip encode_image; ratio_vs_clip (goal <= 1.4)",
    ),
    "weight_reg": (
        "ovc.bench.models:bench_weight_reg",
        "branch training step with vs without stochastic weight regularisation; ratio_vs_plain_step (goal <= 1.15)",
    ),
    "synthworld": (
        "ovc.bench.synthworld:bench_synthworld",
        "render 2,000 clips (16 frames, 64x64); seconds_per_1000_clips",
    ),
    "label_encoder": (
        "ovc.bench.label_encoder:bench_label_encoder",
        "embed 1,000 labels batched vs per-label loop (ViT-B-32 text, MiniLM, 2 threads); speedup_vs_loop (goal >= 10)",
    ),
    "classify_throughput": (
        "ovc.bench.infer:bench_classify_throughput",
        "classify 160 small clips end to end (decode threads ahead) vs encode-only on pre-decoded frames; ratio_vs_encode_only (goal >= 0.9)",
    ),
    "feature_cache": (
        "ovc.bench.features:bench_feature_cache",
        "one training epoch from decoded frames vs from the cached CLIP trunk outputs; speedup (goal >= 3)",
    ),
    "data_wait": (
        "ovc.bench.data:bench_data_wait",
        "fraction of an `ours` training epoch spent waiting for frames with 0 and 2 DataLoader workers; wait_fraction (goal <= 0.10 with 2)",
    ),
    "gpu_smoke": (
        "ovc.bench.gpu:bench_gpu_smoke",
        "2 Ray workers on GPUs train every method (random ViT-B/16 + tiny T5), evaluate, publish, classify; devices, finite losses, exact resume, clips/s per GPU (no CUDA: a message, exit 0)",
    ),
    "train_step": (
        "ovc.bench.train_step:bench_train_step",
        "one `ours` training step of 16 videos / 64 labels (1 thread), optimised (lean attention, CPU bf16) vs reference path; speedup (goal >= 2), loss/grad differences",
    ),
    "paper_claims": (
        "ovc.bench.paper_claims:bench_paper_claims",
        "train + evaluate seeds 0 1 2 (world and bootstrapped CLIP shared), mean ± std per (split, method, metric) and a verdict per claim of the paper (holds = margin > 2 x pooled std); claims.md",
    ),
    "vocab_add": (
        "ovc.bench.vocab:bench_vocab_add",
        "ovc vocab add of 10k and 100k labels (fake encoder), fresh and repeated; seconds per case (goal: repeat 100k <= 10 s)",
    ),
    "scoring": (
        "ovc.bench.infer:bench_scoring",
        "score one video vs 100k x 512 labels, int8 pruning + exact fp32 rescoring (score_ms_100k, goal <= 5) and load them via the memory-mapped cache (load_s_100k, goal <= 1)",
    ),
    "predict": (
        "ovc.bench.infer:bench_predict",
        "clips/s of the single-process classifier vs ovc predict on Ray Data with 1 and 2 actors, same 200 clips; share of time in decode/encode/score",
    ),
}


def get_bench(name: str) -> Callable[..., dict[str, Any]]:
    if name not in BENCHES:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
    module, fn = BENCHES[name][0].split(":")
    return getattr(importlib.import_module(module), fn)


def machine_info() -> dict[str, Any]:
    """Cores, torch threads and platform, attached to every benchmark's JSON."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info
