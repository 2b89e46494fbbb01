"""``ovc bench data_wait``: how much of an ``ours`` training step waits for frames.

Builds a small synthetic project in a temp dir (ingest, clean, a random-weight CLIP saved to disk),
then trains ``ours`` for one epoch in-process twice, with ``reader.loader_workers`` 0 (decode
inline) and 2 (DataLoader worker processes decode the next batches while the model steps). The
trainer times how long each step blocks on its batch of frames (``data_wait_seconds`` in the
run's history); ``wait_fraction`` = that time / the epoch's wall time, side by side.

Goal: ``wait_fraction["2"] <= 0.10`` — decoding hidden behind the step.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def bench_data_wait(quick: bool = False) -> dict[str, Any]:
    from ovc.config import ClipConfig, load_config
    from ovc.models.clip import create_clip, save_clip_local_dir
    from ovc.models.methods import run_dir
    from ovc.pipeline import run_stage
    from ovc.train.loop import train_methods

    n_train = 32 if quick else 96
    with tempfile.TemporaryDirectory(prefix="ovc-bench-data-") as tmp:
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
            "train.batch_size=8",
            "train.max_steps_per_epoch=0",
            "train.progress=false",
            "train.threads_per_worker=1",
            "compute.device=cpu",
        ]
        cfg = load_config(None, base)
        run_stage("ingest", cfg)
        run_stage("clean", cfg)
        torch.manual_seed(0)
        save_clip_local_dir(create_clip(ClipConfig(model=cfg.clip.model)), cfg.clip.model, root / "clip")
        result: dict[str, dict[str, float]] = {}
        for workers in (0, 2):
            run_cfg = load_config(None, base + [f"reader.loader_workers={workers}", f"paths.data={root}"])
            t = time.perf_counter()
            h = train_methods(run_cfg, ["ours"])["ours"]["history"][0]
            # each run trains afresh: the fingerprint ignores loader_workers, so drop the finished run
            shutil.rmtree(run_dir(run_cfg, "ours"))
            result[str(workers)] = {
                "wait_s": h["data_wait_seconds"],
                "epoch_s": h["seconds"],
                "wall_s": time.perf_counter() - t,
            }
    return {
        "method": "ours",
        "train_videos": n_train,
        "batch_size": 8,
        "frames": f"{cfg.reader.num_frames}x{cfg.reader.image_size}²",
        "model_threads": 1,
        "wait_fraction": {k: round(v["wait_s"] / v["epoch_s"], 4) for k, v in result.items()},
        "wait_seconds": {k: round(v["wait_s"], 3) for k, v in result.items()},
        "epoch_seconds": {k: round(v["epoch_s"], 3) for k, v in result.items()},
        "goal": 'wait_fraction["2"] <= 0.10',
    }
