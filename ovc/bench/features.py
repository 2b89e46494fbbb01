"""``ovc bench feature_cache``: one training epoch from frames vs from the feature cache, side by side.

Builds a small synthetic world and a random-weight tiny CLIP in a temp dir (the offline default's
architecture), then trains the same method for one epoch twice — decoding + CLIP trunk every step,
and reading the cached trunk outputs — and reports ``speedup`` = seconds per epoch ratio. It also
reports the video side alone (decode + trunk + branch forward vs cache lookup + branch forward),
because the label encoder's cost (LLM + CLIP text for 4B labels, paper §3.3) is the same in both
runs and bounds the whole-step speed-up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def bench_feature_cache(quick: bool = False) -> dict[str, Any]:
    from ovc.config import ClipConfig, load_config
    from ovc.models.build import build_method, method_clip
    from ovc.models.clip import create_clip, save_clip_local_dir
    from ovc.pipeline import run_stage
    from ovc.train.features import FeatureCache
    from ovc.train.loop import _batch_videos, _TrainData, train_method

    torch.set_num_threads(2)
    n_train = 32 if quick else 96
    method = "ours"
    with tempfile.TemporaryDirectory(prefix="ovc-bench-features-") as tmp:
        root = Path(tmp)
        base = [
            f"paths.data={root}", f"world.n_train={n_train}", "world.n_val=4", "world.n_test=2", "clean.min_count=1",
            f"clip.pretrained=local-dir:{root / 'clip'}", "train.num_workers=0", "train.epochs=1", "train.batch_size=16",
            "train.progress=false", "train.threads_per_worker=2", "features.dtype=float32",
        ]
        cfg = load_config(None, base)
        run_stage("ingest", cfg)
        run_stage("clean", cfg)
        torch.manual_seed(0)
        save_clip_local_dir(create_clip(ClipConfig(model=cfg.clip.model)), cfg.clip.model, root / "clip")

        t = time.perf_counter()
        run_stage("features", load_config(None, base + ["features.enabled=true"]))
        build_s = time.perf_counter() - t

        frames_run = train_method(cfg, method)["history"][0]["seconds"]
        cached_cfg = load_config(None, base + ["features.enabled=true", "train.seed=1"])
        cached_run = train_method(cached_cfg, method)["history"][0]["seconds"]

        # the video side alone, same batches
        m = build_method(cfg, method)
        m.train()
        data = _TrainData(cfg)
        cache = FeatureCache.load(cached_cfg)
        batches = [list(range(i, min(i + 16, len(data)))) for i in range(0, len(data), 16)]
        rng = np.random.default_rng(0)

        def video_side(use_cache: bool) -> float:
            t0 = time.perf_counter()
            with torch.no_grad():
                for idx in batches:
                    videos, _ = _batch_videos(data, idx, cfg, method_clip(m), rng, cache if use_cache else None)
                    if use_cache:
                        m.video_encoder.forward_features(videos)
                    else:
                        m.video_encoder(videos)
            return time.perf_counter() - t0

        video_frames = video_side(False)
        video_cached = video_side(True)
    return {
        "method": method,
        "train_videos": n_train,
        "epoch_seconds_from_frames": round(frames_run, 3),
        "epoch_seconds_from_cache": round(cached_run, 3),
        "speedup": round(frames_run / cached_run, 3),
        "video_side_seconds_from_frames": round(video_frames, 3),
        "video_side_seconds_from_cache": round(video_cached, 3),
        "video_side_speedup": round(video_frames / video_cached, 3),
        "cache_build_seconds": round(build_s, 3),
        "goal": "speedup >= 3",
        "note": "random-weight ovc-vit-tiny CLIP, MiniLM label encoder; the label encoder's share of a step is not cached",
    }
