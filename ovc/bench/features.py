"""``ovc bench feature_cache``: training epochs from decoded frames vs from the feature cache, side by side.

Builds a small synthetic world and a random-weight CLIP of the offline default's architecture in a
temp dir, then trains each method whose video side is the frozen trunk (``ours``,
``ours_no_temporal``, ``coop``, ``dualcoop``: the train stage's methods that can use the cache) for
one epoch twice — decoding + CLIP trunk every step, and reading the cached trunk outputs.

Figures:

* ``speedup``: the train stage's epoch time over those methods, frames / cache (what switching
  ``features.enabled`` on saves a user);
* ``speedup_by_method``: the same ratio per method;
* ``video_side_speedup``: decode + trunk + branch forward vs cache lookup + branch forward, same
  batches, no label side.

What bounds the ratio is the work the cache cannot hold: the label encoder (LLM + CLIP text for 4B
labels, paper §3.3) of ``ours*`` and, for ``ours``, the temporal branch itself — with the offline
default's 4-layer ViT and T=4 the branch spans every trunk layer, so it costs more (forward +
backward) than the frozen trunk it reads. The cached frame embeddings make the video side of the
frozen-video methods free.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, cast

import torch

from ovc.models.methods import CACHEABLE_METHODS as _CACHEABLE
from ovc.models.methods import method_spec

# the train stage's methods whose video side is the frozen trunk (vificlip fine-tunes CLIP: no cache);
# ours_synth is ours on other labels and ours_no_reg ours at λ = 0, so they add nothing to measure
CACHEABLE_METHODS = tuple(m for m in _CACHEABLE if method_spec(m).builds == m and not method_spec(m).variant_of)


def bench_feature_cache(quick: bool = False) -> dict[str, Any]:
    from ovc.config import ClipConfig, load_config
    from ovc.data.loader import ClipLoader, to_model_input
    from ovc.models.clip import create_clip, save_clip_local_dir
    from ovc.models.methods import build_method, method_clip
    from ovc.models.video_encoder import VideoEncoder
    from ovc.pipeline import run_stage
    from ovc.train.data import TrainData
    from ovc.train.features import FeatureCache
    from ovc.train.loop import train_methods

    torch.set_num_threads(2)
    n_train = 32 if quick else 96
    methods = ("ours", "coop") if quick else CACHEABLE_METHODS
    with tempfile.TemporaryDirectory(prefix="ovc-bench-features-") as tmp:
        root = Path(tmp)
        base = [
            f"paths.data={root}",
            f"world.n_train={n_train}",
            "world.n_val=4",
            "world.n_test=2",
            "clean.min_count=1",
            f"clip.pretrained=local-dir:{root / 'clip'}",
            "train.num_workers=0",
            "train.epochs=1",
            "train.batch_size=16",
            "train.max_steps_per_epoch=0",
            "train.progress=false",
            "train.threads_per_worker=2",
            "features.dtype=float32",
        ]
        cfg = load_config(None, base)
        run_stage("ingest", cfg)
        run_stage("clean", cfg)
        torch.manual_seed(0)
        save_clip_local_dir(create_clip(ClipConfig(model=cfg.clip.model)), cfg.clip.model, root / "clip")

        t = time.perf_counter()
        run_stage("features", load_config(None, base + ["features.enabled=true"]))
        build_s = time.perf_counter() - t

        cached_cfg = load_config(None, base + ["features.enabled=true"])
        by_method: dict[str, dict[str, float]] = {}
        for method in methods:  # frames then cache, method by method: a busy machine slows both alike
            frames_s = train_methods(cfg, [method])[method]["history"][0]["seconds"]
            cached_s = train_methods(cached_cfg, [method])[method]["history"][0]["seconds"]
            by_method[method] = {
                "from_frames": round(frames_s, 3),
                "from_cache": round(cached_s, 3),
                "speedup": round(frames_s / cached_s, 3),
            }

        # the video side of `ours` alone, same batches
        m = build_method(cfg, "ours")
        m.train()
        data = TrainData(cfg)
        cache = FeatureCache.load(cached_cfg)
        batches = [list(range(i, min(i + 16, len(data)))) for i in range(0, len(data), 16)]
        loader = ClipLoader.from_config(cfg, data.paths, train=True, stage="bench", num_workers=0)
        clip = method_clip(m)

        def video_side(use_cache: bool) -> float:
            t0 = time.perf_counter()
            with torch.no_grad():
                if use_cache:
                    for idx in batches:
                        cast(VideoEncoder, m.video_encoder).forward_features(
                            cache.get([data.video_ids[i] for i in idx])
                        )
                else:
                    for batch in loader.batches(batches):
                        if batch.frames is not None:  # None: no clip of the batch was readable
                            m.video_encoder(to_model_input(batch.frames, "cpu", clip.image_mean, clip.image_std))
            return time.perf_counter() - t0

        video_frames = video_side(False)
        video_cached = video_side(True)
    frames_total = sum(r["from_frames"] for r in by_method.values())
    cached_total = sum(r["from_cache"] for r in by_method.values())
    return {
        "train_videos": n_train,
        "methods": list(methods),
        "epoch_seconds_from_frames": round(frames_total, 3),
        "epoch_seconds_from_cache": round(cached_total, 3),
        "speedup": round(frames_total / cached_total, 3),
        "speedup_by_method": {k: v["speedup"] for k, v in by_method.items()},
        "epoch_seconds_by_method": by_method,
        "video_side_seconds_from_frames": round(video_frames, 3),
        "video_side_seconds_from_cache": round(video_cached, 3),
        "video_side_speedup": round(video_frames / video_cached, 3),
        "cache_build_seconds": round(build_s, 3),
        "goal": "speedup >= 3",
        "note": "random-weight CLIP of the offline default's architecture, MiniLM label encoder, 2 threads; the label encoder and "
        "the temporal branch (T = all 4 layers of the trunk here) are not cacheable",
    }
